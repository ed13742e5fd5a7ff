from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from controlroom.errors import UnsupportedMediaType
from controlroom.otlp.decode import encode_response
from controlroom.otlp.ingest import ingest_otlp
from controlroom.server.auth import SendProject
from controlroom.server.deps import SettingsDep, StoreDep, read_body
from controlroom.server.schemas import problems

router = APIRouter(tags=["ingest"])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@router.post(
    "/v1/traces",
    responses={
        200: {
            "description": "ExportTraceServiceResponse (partial_success lists rejected spans)",
            "content": {PROTOBUF: {}, JSON: {}},
        },
        **problems(
            400,
            401,
            403,
            413,
            415,
            422,
            s400="invalid_json or invalid_encoding: not an OTLP request, or no valid span in it",
            s415="unsupported_media_type: a content type other than OTLP protobuf or JSON, or an encoding "
            "other than gzip or deflate",
            s422="validation_failed: JSON that is not an ExportTraceServiceRequest",
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                PROTOBUF: {},
                JSON: {"schema": {"type": "object", "description": "ExportTraceServiceRequest (OTLP/JSON)"}},
            },
        }
    },
    summary="OTLP/HTTP trace export (protobuf or JSON)",
)
async def post_traces(
    request: Request, project: SendProject, store: StoreDep, settings: SettingsDep
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
