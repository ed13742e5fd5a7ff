"""A real agent process killed between its reservation and its settlement: the server settles the
hold at its full amount when it expires — the spend is never dropped to zero, nor held forever."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import LiveServer, price_and_cap
from controlroom.store.tables import reservations
from tests_support import wait_for

AGENT = textwrap.dedent(
    """
    import sys
    import threading

    import controlroom

    url, key, spool = sys.argv[1:4]
    controlroom.init(url=url, api_key=key, spool_dir=spool, flush_interval=0.05)
    with controlroom.run("bot"):
        # acme-1 at $1/M tokens in and out: 1,000 + 4,000 tokens hold $0.005
        with controlroom.llm("acme", "acme-1", max_tokens=4000, input_tokens_estimate=1000):
            print("reserved", flush=True)
            threading.Event().wait()  # the provider call that never returns: the process dies here
    """
)


def budget(live: LiveServer) -> dict[str, Any]:
    with live.client() as http:
        (b,) = http.get("/v1/budgets").json()["budgets"]
    return dict(b)


@pytest.mark.settings(hold_seconds=2)
def test_an_agent_killed_mid_call_is_charged_its_hold_when_it_expires(
    live: LiveServer, tmp_path: Path
) -> None:
    price_and_cap(live, "1")
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, live.url, live.key, str(tmp_path / "spool")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = agent.stdout.readline() if agent.stdout else b""
        assert line == b"reserved\n", agent.stderr.read() if agent.stderr else b""
        assert (budget(live)["held_usd"], budget(live)["settled_usd"]) == ("0.005", "0")
    finally:
        agent.kill()
        agent.wait(10)
        for pipe in (agent.stdout, agent.stderr):
            if pipe:
                pipe.close()
    wait_for(lambda: budget(live)["held_usd"] == "0", timeout=30)
    assert budget(live)["settled_usd"] == "0.005"  # charged its worst case: it may have been billed
    with live.store.read() as conn:
        assert list(conn.execute(select(reservations.c.state, reservations.c.hold_nanos))) == [
            ("expired", 5_000_000)
        ]
