"""Synchronous control calls to the server (the budget ledger): the two decisions the agent must
wait for. Each thread keeps its own keep-alive connection."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson

NO_BUDGET_TTL = 5.0  # how long "no cap applies to this agent" is believed before asking again


class BudgetExceeded(Exception):
    """A paid call was refused before it was made: it would cross a daily cost cap.

    Not a subclass of any provider's rate-limit error, so retry loops do not spin on it.
    ``reason`` is ``cap_reached``, ``held_by_in_flight_calls``, ``unpriced_model`` or
    ``ledger_unavailable``; amounts are USD decimal strings; ``resets_at`` is when the day ends;
    ``retry_after`` the seconds the server suggests waiting before asking again (None: waiting
    will not help, or unknown).
    """

    controlroom_no_retry = True

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        cap_usd: str | None = None,
        settled_usd: str | None = None,
        held_usd: str | None = None,
        requested_usd: str | None = None,
        remaining_usd: str | None = None,
        resets_at: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.cap_usd = cap_usd
        self.settled_usd = settled_usd
        self.held_usd = held_usd
        self.requested_usd = requested_usd
        self.remaining_usd = remaining_usd
        self.resets_at = resets_at
        self.retry_after = retry_after

    def attributes(self) -> dict[str, Any]:
        return {
            f"controlroom.budget.{k}": v
            for k, v in (
                ("reason", self.reason),
                ("cap_usd", self.cap_usd),
                ("settled_usd", self.settled_usd),
                ("held_usd", self.held_usd),
                ("requested_usd", self.requested_usd),
                ("remaining_usd", self.remaining_usd),
                ("resets_at", self.resets_at),
            )
            if v is not None
        }


class ControlClient:
    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._no_budget_until: dict[str, float] = {}
        self._uncapped: set[str] = set()  # agents the server last said no cap applies to

    def _new_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout)

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_connection()
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], int | None]:
        """Status, JSON document and Retry-After (seconds) of the answer. Sent once more only when
        the connection turns out to be one the server had closed (a stale keep-alive connection):
        not after a timeout, when the server may still be working on the first request."""
        payload = orjson.dumps(body)
        for attempt in (1, 2):
            conn = self._conn()
            try:
                return self._exchange(conn, path, payload)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._local.conn = None
                stale = isinstance(e, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)
                if attempt == 2 or not stale:
                    raise
        raise OSError("unreachable")  # pragma: no cover

    def _exchange(
        self, conn: http.client.HTTPConnection, path: str, payload: bytes
    ) -> tuple[int, dict[str, Any], int | None]:
        conn.request("POST", self._base + path, body=payload, headers=self._headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            parsed = {}
        retry_after = resp.getheader("Retry-After")
        return (
            resp.status,
            parsed if isinstance(parsed, dict) else {},
            int(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    def reserve(
        self,
        *,
        agent: str,
        provider: str,
        model: str,
        input_tokens: int | Callable[[], int],
        max_output_tokens: int | None,
        run_id: str | None = None,
        span_id: str | None = None,
    ) -> str | None:
        """A reservation id, None when no cap applies, or BudgetExceeded. ``input_tokens`` may be a
        function: it is called only if the server is asked."""
        if self._no_budget_until.get(agent, 0.0) > time.monotonic():
            return None
        if callable(input_tokens):
            input_tokens = input_tokens()
        rid = os.urandom(16).hex()  # ours: a request retried after a lost answer holds nothing more
        body: dict[str, Any] = {
            "agent": agent,
            "provider": provider,
            "model": model,
            "input_tokens": input_tokens,
            "run_id": run_id,
            "span_id": span_id,
            "reservation_id": rid,
        }
        if max_output_tokens is not None:
            body["max_output_tokens"] = max_output_tokens
        try:
            status, doc, retry_after = self._post("/v1/budget/reservations", body)
        except (OSError, http.client.HTTPException) as e:
            if not isinstance(e, ConnectionRefusedError):  # the request may have reached the server
                self._release_in_background(rid)
            if agent in self._uncapped:
                # The server's last word was that no cap applies to this agent: an outage of
                # controlroom does not stop an agent that is only traced, not capped.
                return None
            raise BudgetExceeded(
                f"the budget ledger is unreachable ({e}); paid calls are refused until it is back",
                reason="ledger_unavailable",
            ) from None
        if status == 201:
            held = doc.get("reservation_id")
            if held is None:
                self._no_budget_until[agent] = time.monotonic() + NO_BUDGET_TTL
                self._uncapped.add(agent)
            else:
                self._uncapped.discard(agent)
            return held if isinstance(held, str) else None
        self._uncapped.discard(agent)
        if status >= 500:
            self._release_in_background(rid)
        if status == 402:
            raise BudgetExceeded(
                str(doc.get("detail", "daily cost cap reached")),
                reason=str(doc.get("reason", "cap_reached")),
                **{
                    k: doc.get(k)
                    for k in (
                        "cap_usd",
                        "settled_usd",
                        "held_usd",
                        "requested_usd",
                        "remaining_usd",
                        "resets_at",
                    )
                },
                retry_after=retry_after,
            )
        raise BudgetExceeded(
            f"the budget ledger answered HTTP {status}: {doc.get('detail', '')}", reason="ledger_unavailable"
        )

    def _release_in_background(self, reservation_id: str) -> None:
        """The call will not be made: if the server did hold something under this id before the
        answer was lost, release it now rather than have it charged in full when it expires."""
        payload = orjson.dumps({"outcome": "failed_before_generation"})
        path = f"/v1/budget/reservations/{reservation_id}/settle"

        def release() -> None:
            conn = self._new_connection()  # its own, closed after: nothing is left open per release
            try:
                self._exchange(conn, path, payload)
            except (OSError, http.client.HTTPException):
                pass  # the server is away: the hold, if any, expires and is charged in full
            finally:
                conn.close()

        threading.Thread(target=release, name="controlroom-release", daemon=True).start()

    def settle(
        self,
        reservation_id: str,
        *,
        outcome: str,
        usage: dict[str, int] | None,
        cost_usd: Decimal | str | None,
    ) -> bool:
        body: dict[str, Any] = {"outcome": outcome}
        if usage:
            body["usage"] = usage
        if cost_usd is not None:
            body["cost_usd"] = str(cost_usd)
        try:
            status, _, _ = self._post(f"/v1/budget/reservations/{reservation_id}/settle", body)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200


RESERVATION_ATTRIBUTE = "controlroom.reservation_id"


def input_token_bound(value: Any) -> int:
    """An upper bound of a prompt's tokens: its UTF-8 length in bytes (a byte-level BPE token is at
    least one byte), so a reservation is never smaller than the call it covers."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode())
    try:
        import orjson

        return len(orjson.dumps(value, default=repr))
    except TypeError:
        return len(repr(value).encode())


def call_outcome(error: BaseException) -> str:
    """For the budget: a provider's HTTP error answer, or a refused connection, means nothing was
    generated (the hold is released); anything else — a timeout, a dropped stream, a crash in the
    caller's code — may have been billed (it settles at the full hold)."""
    if isinstance(error, BudgetExceeded | ConnectionRefusedError):
        return "failed_before_generation"
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return "failed_before_generation"
    return "unknown"
