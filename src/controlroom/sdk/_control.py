"""Control calls to the server (the budget ledger): the two decisions the agent must wait for,
blocking or awaited, through the SDK's one transport."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from controlroom.sdk._transport import HTTPTransport, Request, Response, Transport, in_thread, json_headers

NO_BUDGET_TTL = 5.0  # how long "no cap applies to this agent" is believed before asking again


class BudgetExceeded(Exception):
    """A paid call was refused before it was made: it would cross a daily cost cap.

    Not a subclass of any provider's rate-limit error, so retry loops do not spin on it.
    ``reason`` is ``cap_reached``, ``held_by_in_flight_calls``, ``unpriced_model`` or
    ``ledger_unavailable``; amounts are USD decimal strings; ``resets_at`` is when the day ends;
    ``retry_after`` the seconds the server suggests waiting before asking again (None: waiting
    will not help, or unknown); ``agent`` the agent whose own cap refused (None: the project's cap,
    or unknown).
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
        agent: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.agent = agent
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
                ("agent", self.agent),
                ("cap_usd", self.cap_usd),
                ("settled_usd", self.settled_usd),
                ("held_usd", self.held_usd),
                ("requested_usd", self.requested_usd),
                ("remaining_usd", self.remaining_usd),
                ("resets_at", self.resets_at),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class _Ask:
    """A reservation request about to be sent: its agent, its id (ours) and the request."""

    agent: str
    reservation_id: str
    request: Request


class ControlClient:
    """The control calls: reserve before a paid call, settle after it. Each has a blocking form and
    an ``await``-able one (``areserve``, ``asettle``) that leaves the event loop free while the
    server decides; both send the same requests through one transport."""

    def __init__(self, url: str, api_key: str, timeout: float, *, transport: Transport | None = None) -> None:
        self.transport: Transport = transport or HTTPTransport(url, timeout=timeout)
        self._headers = json_headers(api_key)
        self._no_budget_until: dict[str, float] = {}
        self._uncapped: set[str] = set()  # agents the server last said no cap applies to

    def close(self) -> None:
        self.transport.close()

    def _request(self, path: str, body: dict[str, Any]) -> Request:
        return Request("POST", path, orjson.dumps(body), self._headers)

    def _send(self, request: Request) -> Response | OSError:
        """The answer, or why there is none (returned, so it can cross from a pool thread)."""
        try:
            return self.transport.send(request)
        except OSError as e:
            return e

    async def _asend(
        self, request: Request, *, abandoned: Callable[[Response | OSError], None] | None = None
    ) -> Response | OSError:
        """:meth:`_send`, awaited: the event loop runs on while the server answers (a reservation,
        a settlement; a long poll with ``request.timeout``). ``abandoned``: see :func:`in_thread`."""
        return await in_thread(functools.partial(self._send, request), abandoned=abandoned)

    # -- reserve ---------------------------------------------------------------------------------
    def reserve(self, **request: Any) -> str | None:
        """A reservation id, None when no cap applies, or BudgetExceeded; ``request`` as
        :meth:`_ask` takes it."""
        ask = self._ask(**request)
        return None if ask is None else self._reserved(ask, self._send(ask.request))

    async def areserve(self, **request: Any) -> str | None:
        """:meth:`reserve`, awaited: other tasks run while the server decides. Cancelled while the
        request is out, it releases whatever the server held for it."""
        ask = self._ask(**request)
        if ask is None:
            return None
        answer = await self._asend(
            ask.request, abandoned=lambda _: self._release_in_background(ask.reservation_id)
        )
        return self._reserved(ask, answer)

    def _ask(
        self,
        *,
        agent: str,
        provider: str | None,
        model: str,
        input_tokens: int | Callable[[], int],
        max_output_tokens: int | None,
        run_id: str | None = None,
        span_id: str | None = None,
    ) -> _Ask | None:
        """The reservation request, or None while the server's word that no cap applies holds.
        ``input_tokens`` may be a function: it is called only if the server is asked."""
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
        return _Ask(agent, rid, self._request("/v1/budget/reservations", body))

    def _reserved(self, ask: _Ask, answer: Response | OSError) -> str | None:
        """What the server's answer (or its absence) means for the call."""
        agent = ask.agent
        if isinstance(answer, OSError):
            if not isinstance(answer, ConnectionRefusedError):  # the request may have reached the server
                self._release_in_background(ask.reservation_id)
            if agent in self._uncapped:
                # The server's last word was that no cap applies to this agent: an outage of
                # controlroom does not stop an agent that is only traced, not capped.
                return None
            raise BudgetExceeded(
                f"the budget ledger is unreachable ({answer}); paid calls are refused until it is back",
                reason="ledger_unavailable",
            ) from None
        status, doc = answer.status, answer.json()
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
            self._release_in_background(ask.reservation_id)
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
                retry_after=answer.retry_after(),
                agent=doc.get("agent") if isinstance(doc.get("agent"), str) else None,
            )
        raise BudgetExceeded(
            f"the budget ledger answered HTTP {status}: {doc.get('detail', '')}", reason="ledger_unavailable"
        )

    def _release_in_background(self, reservation_id: str) -> None:
        """The call will not be made: if the server did hold something under this id before the
        answer was lost, release it now rather than have it charged in full when it expires."""
        request = self._settlement(reservation_id, outcome="failed_before_generation")

        def release() -> None:
            # a connection of its own, closed after: nothing is left open per release; if the
            # server is away, the hold (if any) expires and is charged in full
            with contextlib.suppress(OSError):
                self.transport.send(request, reuse=False)

        threading.Thread(target=release, name="controlroom-release", daemon=True).start()

    # -- settle ----------------------------------------------------------------------------------
    def settle(self, reservation_id: str, **result: Any) -> bool:
        """True when the server settled the reservation; ``result`` as :meth:`_settlement` takes it."""
        return _settled(self._send(self._settlement(reservation_id, **result)))

    async def asettle(self, reservation_id: str, **result: Any) -> bool:
        """:meth:`settle`, awaited: other tasks run while the server settles."""
        return _settled(await self._asend(self._settlement(reservation_id, **result)))

    def _settlement(
        self,
        reservation_id: str,
        *,
        outcome: str,
        usage: dict[str, int] | None = None,
        cost_usd: Decimal | str | None = None,
    ) -> Request:
        body: dict[str, Any] = {"outcome": outcome}
        if usage:
            body["usage"] = usage
        if cost_usd is not None:
            body["cost_usd"] = str(cost_usd)
        return self._request(f"/v1/budget/reservations/{reservation_id}/settle", body)


def _settled(answer: Response | OSError) -> bool:
    return isinstance(answer, Response) and answer.status == 200


RESERVATION_ATTRIBUTE = "controlroom.reservation_id"


def input_token_bound(value: Any) -> int:
    """An upper bound of a prompt's tokens: its UTF-8 length in bytes (a byte-level BPE token is at
    least one byte), so a reservation is never smaller than the call it covers."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode())
    try:
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
