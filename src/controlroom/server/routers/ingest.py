from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from controlroom.server.auth import SendProject
from controlroom.server.deps import SettingsDep, StoreDep, parse_json, read_body
from controlroom.server.responses import JSONResponse
from controlroom.server.schemas import IngestResponse, problems
from controlroom.store.ingest import ingest_events

router = APIRouter(tags=["ingest"])


@router.post(
    "/v1/events",
    response_model=IngestResponse,
    responses=problems(
        400,
        401,
        403,
        413,
        415,
        s400="invalid_json, invalid_encoding, or invalid_event: no valid event in the batch (each listed "
        "in rejected); invalid_query for NUL characters in a query parameter",
        s413="payload_too_large: too many events, or the body is too large",
        s415="unsupported_media_type: a content type or encoding other than JSON, gzip or deflate",
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}},
        }
    },
    summary="Append a batch of events to the run log",
)
async def post_events(
    request: Request, project: SendProject, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    """Validates each event; appends the valid ones durably before answering. A re-sent event id is
    counted in ``duplicates`` and stored once; invalid events are listed in ``rejected`` by index
    and do not stop the valid ones. The body may be gzip- or deflate-encoded."""
    body = await read_body(request, settings.max_body_bytes)
    payload = parse_json(body, request.headers.get("content-type"))
    result = await run_in_threadpool(
        ingest_events,
        store,
        project.id,
        payload,
        max_events=settings.max_batch_events,
        on_append=request.app.state.notify_projector,
    )
    return JSONResponse(result.as_dict())
