from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from controlroom.errors import UnsupportedMediaType
from controlroom.otlp.decode import encode_response
from controlroom.otlp.ingest import ingest_otlp
from controlroom.server.deps import ProjectDep, SettingsDep, StoreDep, read_body
from controlroom.server.schemas import Problem

router = APIRouter(tags=["ingest"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Not an OTLP request, or no valid span in it"},
    401: {"model": Problem, "description": "Missing or invalid API key"},
    413: {"model": Problem, "description": "Body too large"},
    415: {"model": Problem, "description": "Unsupported content type or encoding"},
}
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@router.post(
    "/v1/traces",
    responses={
        200: {
            "description": "ExportTraceServiceResponse (partial_success lists rejected spans)",
            "content": {PROTOBUF: {}, JSON: {}},
        },
        **PROBLEMS,
    },
    openapi_extra={"requestBody": {"required": True, "content": {PROTOBUF: {}, JSON: {}}}},
    summary="OTLP/HTTP trace export (protobuf or JSON)",
)
async def post_traces(
    request: Request, project: ProjectDep, store: StoreDep, settings: SettingsDep
) -> Response:
    """Point any OpenTelemetry exporter here (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=<url>/v1/traces``,
    ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer <key>``). Each trace becomes a run, each span a
    span of it; spans are durable before the response. gzip and deflate bodies are accepted."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(
            f"content-type {ctype or '(none)'!r} is not OTLP; send {PROTOBUF} or {JSON}",
            accepted=[PROTOBUF, JSON],
        )
    body = await read_body(request, settings.max_body_bytes)
    protobuf = ctype == PROTOBUF
    result = await run_in_threadpool(
        ingest_otlp,
        store,
        project.id,
        body,
        protobuf=protobuf,
        max_events=10 * settings.max_batch_events,
        on_append=request.app.state.notify_projector,
    )
    return Response(
        encode_response(result.rejected_spans, result.message, protobuf=protobuf),
        media_type=PROTOBUF if protobuf else JSON,
    )
