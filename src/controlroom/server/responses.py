from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

from controlroom.errors import ControlroomError, InvalidJSON, InvalidQuery, ValidationFailed


class JSONResponse(StarletteJSONResponse):
    """JSON rendered with orjson (fast; handles non-str keys). A JSONResponse subclass, so the
    OpenAPI document shows each route's response model."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


PROBLEM_JSON = "application/problem+json"


def problem_response(doc: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    """The one rendering of a problem document (every route, fast or not, and every handler)."""
    return JSONResponse(doc, status_code=doc["status"], media_type=PROBLEM_JSON, headers=headers)


def request_problem(errors: Sequence[Any]) -> ControlroomError:
    """What pydantic found wrong with a request, as one error: a body that is not JSON is 400
    invalid_json; a body that does not fit the fields 422 validation_failed; query and path
    parameters 400 invalid_query. Both carry ``errors``: {parameter, reason} per value at fault."""
    if any(err["type"] == "json_invalid" for err in errors):
        return InvalidJSON("the body is not valid JSON")
    found = []
    for err in errors:
        loc = err["loc"][1:] if err["loc"][:1] in (("body",), ("query",), ("path",)) else err["loc"]
        found.append({"parameter": ".".join(str(p) for p in loc) or "body", "reason": err["msg"]})
    detail = "; ".join(f"{e['parameter']}: {e['reason']}" for e in found)
    in_query = all(err["loc"][:1] in (("query",), ("path",)) for err in errors)
    error: ControlroomError = InvalidQuery(detail) if in_query else ValidationFailed(detail)
    error.extra["errors"] = found
    return error
