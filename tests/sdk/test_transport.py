"""The SDK's one transport: the control client, the exporter and resend against the in-memory
MockTransport (no network), and the HTTP transport's rule for sending a request twice."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import controlroom
from controlroom.sdk._control import ControlClient
from controlroom.sdk._exporter import encode
from controlroom.sdk._resend import resend
from controlroom.sdk._transport import HTTPTransport, MockTransport, Request, Response
from tests_support import wait_for

KEY = "cr_" + "k" * 40
URL = "http://controlroom.test"


def answer(status: int, doc: dict[str, Any] | None = None, **headers: str) -> Response:
    return Response(status, orjson.dumps(doc or {}), {k.replace("_", "-"): v for k, v in headers.items()})


def reserve(control: ControlClient, agent: str = "bot") -> str | None:
    return control.reserve(
        agent=agent, provider="acme", model="acme-1", input_tokens=10, max_output_tokens=20
    )


def control_with(handler: Callable[[Request], Response]) -> tuple[ControlClient, MockTransport]:
    mock = MockTransport(handler)
    return ControlClient(URL, KEY, 5.0, transport=mock), mock


def test_a_reservation_sends_the_call_and_returns_the_servers_id() -> None:
    control, mock = control_with(
        lambda r: answer(200) if r.path.endswith("/settle") else answer(201, {"reservation_id": "r-7"})
    )
    assert reserve(control) == "r-7"
    (sent,) = mock.requests
    body = orjson.loads(sent.body)
    assert (sent.method, sent.path, sent.headers["Authorization"]) == (
        "POST",
        "/v1/budget/reservations",
        f"Bearer {KEY}",
    )
    assert {k: body[k] for k in ("agent", "provider", "model", "input_tokens", "max_output_tokens")} == {
        "agent": "bot",
        "provider": "acme",
        "model": "acme-1",
        "input_tokens": 10,
        "max_output_tokens": 20,
    }
    assert len(body["reservation_id"]) == 32  # the client's own id, for an idempotent retry
    assert control.settle("r-7", outcome="completed", usage={"input_tokens": 3}, cost_usd="0.01")
    assert orjson.loads(mock.requests[1].body) == {
        "outcome": "completed",
        "usage": {"input_tokens": 3},
        "cost_usd": "0.01",
    }


def test_no_cap_is_believed_for_a_while_and_survives_an_outage() -> None:
    answers = [answer(201, {"reservation_id": None})]

    def handler(request: Request) -> Response:
        if not answers:
            raise ConnectionRefusedError("down")
        return answers.pop()

    control, mock = control_with(handler)
    assert reserve(control) is None
    assert reserve(control) is None and len(mock.requests) == 1  # not asked again within the TTL
    control._no_budget_until.clear()  # the TTL passed; the server is down now
    assert reserve(control) is None  # an agent the server last said is uncapped keeps working
    with pytest.raises(controlroom.BudgetExceeded) as refused:
        reserve(control, agent="stranger")  # never told: fails closed
    assert refused.value.reason == "ledger_unavailable"


def test_a_refusal_carries_the_servers_figures() -> None:
    doc = {
        "detail": "cap reached",
        "reason": "cap_reached",
        "cap_usd": "1",
        "settled_usd": "0.99",
        "held_usd": "0",
        "requested_usd": "0.02",
        "remaining_usd": "0.01",
        "resets_at": "2026-12-05T00:00:00Z",
    }
    control, _ = control_with(lambda r: answer(402, doc, retry_after="3600"))
    with pytest.raises(controlroom.BudgetExceeded) as refused:
        reserve(control)
    e = refused.value
    assert (str(e), e.reason, e.cap_usd, e.remaining_usd, e.resets_at, e.retry_after) == (
        "cap reached",
        "cap_reached",
        "1",
        "0.01",
        "2026-12-05T00:00:00Z",
        3600,
    )


@pytest.mark.parametrize(
    ("failure", "released"),
    [(ConnectionRefusedError("refused"), False), (TimeoutError("timed out"), True), (None, True)],
)
def test_a_reservation_without_an_answer_is_refused_and_released_unless_nothing_was_sent(
    failure: OSError | None, released: bool
) -> None:
    """Refused: nothing reached the server. A timeout or a 5xx: the server may hold something
    under the client's id, so the client releases it (in the background)."""
    settled = threading.Event()

    def handler(request: Request) -> Response:
        if request.path.endswith("/settle"):
            settled.set()
            return answer(200)
        if failure is not None:
            raise failure
        return answer(503, {"detail": "busy"})

    control, mock = control_with(handler)
    with pytest.raises(controlroom.BudgetExceeded) as refused:
        reserve(control)
    assert refused.value.reason == "ledger_unavailable"
    if released:
        wait_for(settled.is_set)
        rid = orjson.loads(mock.requests[0].body)["reservation_id"]
        assert mock.requests[1].path == f"/v1/budget/reservations/{rid}/settle"
        assert orjson.loads(mock.requests[1].body) == {"outcome": "failed_before_generation"}
    else:
        assert [r.path for r in mock.requests] == ["/v1/budget/reservations"]


def test_the_whole_sdk_runs_on_a_mock_transport(tmp_path: Path) -> None:
    """``controlroom.init(transport=...)``: the exporter and the control calls both use it."""
    events: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        if request.path == "/v1/events":
            assert request.headers["Content-Encoding"] == "gzip"
            events.extend(orjson.loads(gzip.decompress(request.body))["events"])
            return answer(200, {"accepted": 1})
        if request.path == "/v1/budget/reservations":
            return answer(201, {"reservation_id": "r-1"})
        return answer(200)

    mock = MockTransport(handler)
    controlroom.init(url=URL, api_key=KEY, spool_dir=tmp_path, strict=True, transport=mock)
    try:
        with controlroom.run("bot"), controlroom.llm("acme", "acme-1", input="hi") as call:
            call.record(input_tokens=2, output_tokens=1)
        assert controlroom.flush(5)
    finally:
        controlroom.shutdown()
    assert [e["type"] for e in events] == ["run.started", "span.started", "span.ended", "run.ended"]
    assert [r.path for r in mock.requests if r.path != "/v1/events"] == [
        "/v1/budget/reservations",
        "/v1/budget/reservations/r-1/settle",
    ]
    assert mock.closed


@pytest.fixture
def exporter_sdk(tmp_path: Path) -> Iterator[Callable[[Callable[[Request], Response]], Path]]:
    """Start the SDK on a mock transport with ``handler``; the spool directory."""

    def start(handler: Callable[[Request], Response]) -> Path:
        controlroom.init(
            url=URL,
            api_key=KEY,
            spool_dir=tmp_path / "spool",
            transport=MockTransport(handler),
            budget=False,
            flush_interval=3600,  # sent by flush() alone: one batch per flush
        )
        return tmp_path / "spool"

    yield start
    controlroom.shutdown(timeout=0.5)


def _batch_sizes(requests: list[int]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        n = len(orjson.loads(gzip.decompress(request.body))["events"])
        requests.append(n)
        return answer(413) if n > 2 else answer(200, {"accepted": n})

    return handler


def test_a_batch_too_large_for_the_server_is_sent_in_halves(exporter_sdk: Any) -> None:
    sizes: list[int] = []
    exporter_sdk(_batch_sizes(sizes))
    with controlroom.run("bot"):
        controlroom.score("quality", 1.0)
    assert controlroom.flush(5)
    assert sizes == [3, 1, 2]  # run.started, score, run.ended: 413, then halves of 1 and 2


def test_a_server_error_spools_and_a_refusal_keeps_the_batch_for_a_human(exporter_sdk: Any) -> None:
    status = [503]
    spool = exporter_sdk(lambda r: answer(status[0], {"detail": "no"}))
    with controlroom.run("bot"):
        pass
    assert not controlroom.flush(0.3)
    assert len(list(spool.glob("*.batch.gz"))) == 1  # kept to be sent again
    status[0] = 400
    assert controlroom.flush(5)  # nothing left to send: the refused batch is set aside
    assert not list(spool.glob("*.batch.gz")) and len(list((spool / "rejected").glob("*.batch.gz"))) == 1


def test_resend_on_a_mock_transport(tmp_path: Path) -> None:
    good, bad = tmp_path / "1.batch.gz", tmp_path / "2.batch.gz"
    good.write_bytes(encode([{"id": "e1"}]))
    bad.write_bytes(b"not gzip")

    def handler(request: Request) -> Response:
        if request.body == bad.read_bytes():
            return answer(400, {"detail": "body is not gzip"})
        return answer(200, {"accepted": 0, "duplicates": 1, "rejected": []})

    mock = MockTransport(handler)
    outcomes = list(resend([tmp_path], url=URL, api_key=KEY, transport=mock))
    assert [(o.path, o.sent, o.duplicates, o.detail) for o in outcomes] == [
        (good, True, 1, ""),
        (bad, False, 0, "HTTP 400: 'body is not gzip'"),
    ]
    assert not good.exists() and bad.exists() and mock.closed


# -- the HTTP transport's retry rule ---------------------------------------------------------------


class RawServer:
    """A loopback server speaking raw HTTP: ``script`` says, per connection, how many requests it
    answers before closing (keep-alive) and whether it then answers the next one with garbage."""

    def __init__(self, answers_per_connection: list[int], garbage: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.plan = list(answers_per_connection)
        self.garbage = garbage
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request line)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        number = 0
        while self.plan:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            number += 1
            with conn:
                for _ in range(self.plan.pop(0)):
                    data = _read_request(conn)
                    if not data:
                        break
                    self.requests.append((number, data.split(b"\r\n", 1)[0]))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                if self.garbage:
                    conn.recv(65536)
                    conn.sendall(b"SSH-2.0-not-http\r\n")

    def close(self) -> None:
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    """One whole request (head and Content-Length body), or b"" when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        body += chunk
    return data


def test_a_request_on_a_stale_keep_alive_connection_is_sent_once_more() -> None:
    server = RawServer([1, 1])  # the server closes each connection after one answer
    transport = HTTPTransport(server.url, timeout=5)
    try:
        for path in ("/a", "/b"):
            assert transport.send(Request("POST", path, b"{}")).status == 200
    finally:
        transport.close()
        server.close()
    assert server.requests == [(1, b"POST /a HTTP/1.1"), (2, b"POST /b HTTP/1.1")]


def test_an_answer_that_is_not_http_is_an_oserror_and_not_sent_again() -> None:
    server = RawServer([0, 0], garbage=True)
    transport = HTTPTransport(server.url, timeout=5)
    try:
        with pytest.raises(OSError, match="not an HTTP answer"):
            transport.send(Request("POST", "/a", b"{}"))
    finally:
        transport.close()
        server.close()
    assert server.plan == [0]  # one connection used: the request was not sent again


def test_a_url_that_is_not_http_is_refused() -> None:
    for url in ("ftp://x", "http://", "http://h:port"):
        with pytest.raises(ValueError):
            HTTPTransport(url, timeout=1)


def test_a_request_may_wait_longer_or_shorter_than_the_transport() -> None:
    """A request's own timeout (a long poll's) applies to it alone, on a new or a reused
    connection; the next request waits the transport's again."""
    server = RawServer([3])  # one keep-alive connection, three answers
    transport = HTTPTransport(server.url, timeout=60)

    def socket_timeout() -> float | None:
        return transport._local.conn.sock.gettimeout()  # type: ignore[no-any-return]

    try:
        assert transport.send(Request("POST", "/a", b"{}", timeout=90)).status == 200  # a new connection
        assert socket_timeout() == 90
        assert transport.send(Request("POST", "/b", b"{}")).status == 200
        assert socket_timeout() == 60
        assert transport.send(Request("POST", "/c", b"{}", timeout=120)).status == 200  # reused
        assert socket_timeout() == 120
    finally:
        transport.close()
        server.close()
    assert [n for n, _ in server.requests] == [1, 1, 1]
