"""An agent process for the cross-process cap test: it imports only the SDK, so it starts fast."""

from __future__ import annotations

import threading
from typing import Any

MODEL = "acme-1"


def run(url: str, key: str, n_threads: int, out: Any) -> None:
    """One agent process: ``n_threads`` callers reserving and settling through the HTTP API."""
    from controlroom.sdk._control import BudgetExceeded, ControlClient

    control = ControlClient(url, key, timeout=30)
    granted: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        while True:
            try:
                r = control.reserve(
                    agent="bot",
                    provider=None,
                    model=MODEL,
                    input_tokens=1000,
                    max_output_tokens=49_000,
                )
            except BudgetExceeded as e:
                if e.reason == "cap_reached":
                    return
                assert e.reason == "held_by_in_flight_calls", e
                threading.Event().wait(0.002)  # a caller backs off before asking again
                continue
            assert r is not None
            assert control.settle(
                r, outcome="completed", usage={"input_tokens": 1000, "output_tokens": 29_000}, cost_usd=None
            )
            with lock:
                granted.append(30_000_000)

    threads = [threading.Thread(target=call) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    control.close()
    out.put(sum(granted))
