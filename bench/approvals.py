"""Human approvals at the agent's boundary, over loopback HTTP against `controlroom serve`.

Starts `controlroom serve` on a fresh database, with an approver in the project, then:
- round trip: the agent asks (POST /v1/approvals), a person approves (the approvals domain, as the
  decision route calls it), the agent claims its grant and reports it executed; N times, one after
  the other: p50 / p99 of ask + decide + claim (the report apart);
- decision to agent: the SDK waits (``controlroom.approval(...).grant()``, bounded long polls)
  while this process approves the request in the database, as another server process would: how
  long from the decision's commit until the agent holds its grant, p50 / p99 / max;
- many waiters: W agents (asyncio tasks, one event loop) wait at once, then all are approved: all
  must be granted, and the server's thread count is read while they wait (the SDK holds at most
  64 long polls at once per process, `_transport.WAIT_POOL_SIZE`; the others queue in the agent).

    .venv/bin/python bench/approvals.py [--backend sqlite|postgresql] [--n 300] [--waiters 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

import controlroom
from common import fresh_database, latency_summary_ms, serve
from controlroom.accounts import projects
from controlroom.accounts.users import Role, create_user, set_role
from controlroom.approvals import requests as ap
from controlroom.approvals.binding import arguments_hash
from controlroom.sdk._approvals import ApprovalClient, Send
from controlroom.store.engine import Store
from controlroom.store.tables import approvals

PERSON: list[ap.Decider] = []  # the approver, once created


def approve(store: Store, project_id: int, approval_id: str, digest: str) -> None:
    """A person's decision, as the decision route makes it."""
    ap.decide(
        store,
        project_id=project_id,
        approval_id=approval_id,
        decision="approved",
        arguments_hash=digest,
        decider=PERSON[0],
    )


def server_threads(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("Threads:")[1].split()[0])


def round_trips(url: str, key: str, store: Store, project_id: int, n: int) -> dict[str, Any]:
    client = ApprovalClient(url, key, timeout=30)
    run_id = os.urandom(16).hex()
    samples, reports = [], []
    for i in range(n):
        arguments = {"order": i, "usd": "30.00"}
        digest = arguments_hash(run_id=run_id, action="refund", arguments=arguments)
        ask = client.post(
            "/v1/approvals",
            {"run_id": run_id, "action": "refund", "arguments": arguments, "idempotency_key": f"refund#{i}"},
        )
        t = time.perf_counter()
        asked = client.send(Send(ask))
        assert not isinstance(asked, OSError) and asked is not None and asked.status == 201, asked
        approval_id = asked.json()["id"]
        approve(store, project_id, approval_id, digest)
        claimed = client.send(
            Send(client.post(f"/v1/approvals/{approval_id}/claim", {"arguments_hash": digest}))
        )
        assert not isinstance(claimed, OSError) and claimed is not None and claimed.status == 200, claimed
        samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        done = client.send(Send(client.outcome(approval_id, "executed")))
        assert not isinstance(done, OSError) and done is not None and done.status == 200, done
        reports.append(time.perf_counter() - t)
    client.close()
    return {"ask_decide_claim": latency_summary_ms(samples), "report_outcome": latency_summary_ms(reports)}


def decision_to_agent(store: Store, project_id: int, n: int) -> dict[str, Any]:
    """The SDK waits on this thread's side; a person approves from another thread, directly in the
    database (the server learns of it by polling, as of a decision made by another process)."""
    lags: list[float] = []
    with controlroom.run("bench-agent"):
        for i in range(n):
            decided_at: list[float] = []

            def person(i: int = i, decided_at: list[float] = decided_at) -> None:
                a = _wait_request(store, project_id, f"deploy#{i + 1}")
                time.sleep(0.02)  # let the agent's long poll start waiting
                approve(store, project_id, a.id, a.arguments_hash)
                decided_at.append(time.perf_counter())

            thread = threading.Thread(target=person)
            thread.start()
            with controlroom.approval("deploy", {"build": i}, wait=30):
                lags.append(time.perf_counter() - decided_at[0])
            thread.join()
    return latency_summary_ms(lags)


def _wait_request(store: Store, project_id: int, key: str) -> ap.Approval:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with store.read() as conn:
            row = conn.execute(select(approvals.c.id).where(approvals.c.idempotency_key == key)).first()
            if row is not None:
                return ap.get(conn, project_id=project_id, approval_id=row.id)
        time.sleep(0.002)
    raise RuntimeError(f"request {key} never came")


def many_waiters(store: Store, project_id: int, pid: int, waiters: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        before = server_threads(pid)

        async def one(i: int) -> str:
            async with controlroom.run("bench-fleet"):
                grant = await controlroom.approval("scale_up", {"replica": i}, wait=60)
                await grant.aexecuted()
                return grant.status

        tasks = [asyncio.create_task(one(i)) for i in range(waiters)]
        while len(_pending(store, project_id)) < waiters:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # all long polls are in
        during = server_threads(pid)
        for a in _pending(store, project_id):
            approve(store, project_id, a.id, a.arguments_hash)
        statuses = await asyncio.gather(*tasks)
        return {
            "waiters": waiters,
            "granted": statuses.count("executed"),
            "server_threads_before": before,
            "server_threads_while_waiting": during,
        }

    return asyncio.run(main())


def open_long_polls(url: str, key: str, store: Store, project_id: int, pid: int, n: int) -> dict[str, Any]:
    """``n`` long polls held open on the server at once, as ``n`` agents in any language would
    (plain HTTP, one connection each, no SDK pool between them): the server's thread count while
    they wait, and that every one of them hears of its decision."""
    import httpx

    async def main() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as http:
            run_id = os.urandom(16).hex()
            asked = await asyncio.gather(
                *(
                    http.post(
                        "/v1/approvals",
                        json={
                            "run_id": run_id,
                            "action": "rotate_key",
                            "arguments": {"i": i},
                            "idempotency_key": f"k{i}",
                        },
                    )
                    for i in range(n)
                )
            )
            ids = [r.json()["id"] for r in asked]
            before = server_threads(pid)
            waits = [
                asyncio.create_task(http.get(f"/v1/approvals/{i}/wait", params={"timeout": 60})) for i in ids
            ]
            await asyncio.sleep(3.0)  # every long poll is in
            during = server_threads(pid)
            assert not any(w.done() for w in waits), "a long poll answered before its decision"
            for a in _pending(store, project_id):
                if a.action == "rotate_key":
                    approve(store, project_id, a.id, a.arguments_hash)
            answers = await asyncio.gather(*waits)
        return {
            "long_polls": n,
            "answered_approved": sum(r.json()["status"] == "approved" for r in answers),
            "server_threads_before": before,
            "server_threads_while_waiting": during,
        }

    return asyncio.run(main())


def _pending(store: Store, project_id: int) -> list[ap.Approval]:
    with store.read() as conn:
        return ap.queue(conn, project_id=project_id, status="pending", limit=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--n", type=int, default=300, help="round trips (and waits) measured")
    parser.add_argument("--waiters", type=int, default=200, help="agents waiting at once")
    parser.add_argument("--long-polls", type=int, default=1000, help="plain HTTP long polls open at once")
    args = parser.parse_args()
    with fresh_database(args.backend, "approvals") as db:
        store = Store(db)
        store.migrate()
        with store.write() as conn:
            project = projects.ensure_project(conn, name=f"bench-{os.getpid()}")
            key = projects.create_key(conn, project=project).key
            person = create_user(conn, login="bench-approver", password=os.urandom(16).hex())
            set_role(conn, user=person, project=project, role=Role.approver)
        PERSON.append(ap.Decider(person.id, person.login, Role.approver))
        with serve(db) as server, tempfile.TemporaryDirectory() as spool:
            controlroom.init(url=server.url, api_key=key, spool_dir=spool, budget=False)
            trips = round_trips(server.url, key, store, project.id, args.n)
            waits = decision_to_agent(store, project.id, max(20, args.n // 5))
            fleet = many_waiters(store, project.id, server.pid, args.waiters)
            controlroom.shutdown()
            polls = open_long_polls(server.url, key, store, project.id, server.pid, args.long_polls)
        store.dispose()
    result = {
        "database": args.backend,
        **trips,
        "decision_to_agent": waits,
        "many_waiters": fleet,
        "long_polls": polls,
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if fleet["granted"] != args.waiters or polls["answered_approved"] != args.long_polls:
        sys.exit(1)


if __name__ == "__main__":
    main()
