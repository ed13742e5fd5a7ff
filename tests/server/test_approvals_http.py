"""Approvals over real HTTP, on both databases: agents ask, wait and claim with their key; people
log in and decide with their role; sessions, CSRF and roles are enforced on every change."""

from __future__ import annotations

import gzip
import threading
from contextlib import closing
from typing import Any

import httpx
import orjson
import pytest

from conftest import LiveServer
from controlroom.accounts import projects as pr
from controlroom.accounts import users as u
from controlroom.store import log
from factories import run_started
from tests_support import wait_for

PASSWORD = "a long enough password"
RUN = "4bf92f3577b34da6a3ce929d0e0e4736"
CSRF = {"X-Controlroom-CSRF": "1"}

pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest.fixture
def people(live: LiveServer) -> LiveServer:
    with live.store.write() as conn:
        p = pr.get_project(conn, name="acme")
        assert p is not None
        for login, role in (
            ("vic", u.Role.viewer),
            ("amy", u.Role.approver),
            ("bob", u.Role.approver),
            ("ada", u.Role.admin),
        ):
            user = u.create_user(conn, login=login, password=PASSWORD)
            u.set_role(conn, user=user, project=p, role=role)
    return live


def person(live: LiveServer, login: str) -> httpx.Client:
    """A browser-like client logged in as ``login`` (its cookie, the CSRF header on changes)."""
    client = httpx.Client(base_url=live.url, timeout=30, headers=CSRF)
    r = client.post("/v1/session", json={"login": login, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client


def ask(live: LiveServer, arguments: Any = None, key: str = "call_1", **extra: Any) -> dict[str, Any]:
    body = {
        "run_id": RUN,
        "action": "refund",
        "arguments": arguments or {"order": "A-1", "usd": 40},
        "idempotency_key": key,
        "agent": "bot",
        **extra,
    }
    with live.client() as agent:
        r = agent.post("/v1/approvals", json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def decide(
    client: httpx.Client, a: dict[str, Any], decision: str = "approved", **extra: Any
) -> httpx.Response:
    body = {"decision": decision, "arguments_hash": a["arguments_hash"], **extra}
    return client.post(f"/v1/approvals/{a['id']}/decision", json=body)


def test_the_agent_asks_a_person_decides_the_agent_claims_once(people: LiveServer) -> None:
    a = ask(people)
    assert a["status"] == "pending" and ask(people)["id"] == a["id"]  # asked again: the same request
    with closing(person(people, "amy")) as amy:
        queue = amy.get("/v1/approvals", params={"status": "pending"}).json()["approvals"]
        assert [q["id"] for q in queue] == [a["id"]] and queue[0]["arguments"] == {"order": "A-1", "usd": 40}
        r = decide(amy, a)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["decided_by"], r.json()["decided_role"]) == (
        "approved",
        "amy",
        "approver",
    )
    assert r.json()["decided_at"] is not None
    with people.client() as agent:
        waited = agent.get(f"/v1/approvals/{a['id']}/wait", params={"timeout": 5}).json()
        assert waited["status"] == "approved"
        claim = {"arguments_hash": a["arguments_hash"]}
        assert agent.post(f"/v1/approvals/{a['id']}/claim", json=claim).json()["status"] == "claimed"
        again = agent.post(f"/v1/approvals/{a['id']}/claim", json=claim)
        assert again.status_code == 409 and again.json()["code"] == "conflict"
        done = agent.post(f"/v1/approvals/{a['id']}/outcome", json={"outcome": "executed"})
        assert done.json()["status"] == "executed"
        # the run shows its approvals: who decided, with which role, and how it ended
        assert agent.post("/v1/events", json={"events": [run_started(RUN, agent="bot")]}).status_code == 200
        run = wait_for(lambda: (r := agent.get(f"/v1/runs/{RUN}")).status_code == 200 and r.json())
    assert [
        (x["id"], x["action"], x["status"], x["decided_by"], x["decided_role"]) for x in run["approvals"]
    ] == [(a["id"], "refund", "executed", "amy", "approver")]


def test_a_person_resolves_a_claim_whose_agent_never_reported(people: LiveServer) -> None:
    a = ask(people)
    with closing(person(people, "amy")) as amy:
        assert decide(amy, a).status_code == 200
        body = {"outcome": "failed", "reason": "the payment provider shows no refund"}
        early = amy.post(f"/v1/approvals/{a['id']}/resolution", json=body)
        assert early.status_code == 409 and "is approved, not claimed" in early.json()["detail"]
    with people.client() as agent:
        claimed = agent.post(f"/v1/approvals/{a['id']}/claim", json={"arguments_hash": a["arguments_hash"]})
        assert claimed.json()["status"] == "claimed"
        # the agent's key may report its own outcome, never resolve as a person
        assert agent.post(f"/v1/approvals/{a['id']}/resolution", json=body).status_code == 403
    with closing(person(people, "vic")) as vic:
        assert vic.post(f"/v1/approvals/{a['id']}/resolution", json=body).status_code == 403
    with closing(person(people, "amy")) as amy:
        no_reason = amy.post(f"/v1/approvals/{a['id']}/resolution", json={"outcome": "failed"})
        assert no_reason.status_code == 422
        r = amy.post(f"/v1/approvals/{a['id']}/resolution", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "failed" and r.json()["error"]["message"] == body["reason"]
        again = amy.post(f"/v1/approvals/{a['id']}/resolution", json=body)
        assert again.status_code == 409
    with people.store.read() as conn:
        failed = log.read_after(conn, 0, 100, types=["approval.failed"])
    assert len(failed) == 1
    recorded = orjson.loads(failed[0].body)
    assert (recorded["user"], recorded["role"], recorded["reason"]) == ("amy", "approver", body["reason"])


@pytest.mark.settings(max_body_bytes=4096)
def test_the_agent_s_calls_answer_bad_requests_as_every_route_does(people: LiveServer) -> None:
    """Asking, claiming and reporting are fast routes (server/fastpath.py): a person's session is
    refused and parameters and bodies are validated as on every route, and bodies are read by the
    one body reader (its size limit, gzip, the JSON content type)."""
    a = ask(people)
    claim, outcome = f"/v1/approvals/{a['id']}/claim", f"/v1/approvals/{a['id']}/outcome"
    as_json = {"content-type": "application/json"}
    with people.client() as agent:
        r = agent.post("/v1/approvals/xyz/claim", json={"arguments_hash": a["arguments_hash"]})
        assert r.status_code == 400 and r.json()["code"] == "invalid_query"
        r = agent.post("/v1/approvals/xyz/claim", json={"arguments_hash": "x"})
        assert r.status_code == 422
        assert [e["parameter"] for e in r.json()["errors"]] == ["approval_id", "arguments_hash"]
        r = agent.post(claim, content=b"", headers=as_json)
        assert r.status_code == 422 and r.json()["detail"] == "body: Field required"
        r = agent.post(claim, content=b"{", headers=as_json)
        assert r.status_code == 400 and r.json()["code"] == "invalid_json"
        r = agent.post(claim, content=orjson.dumps({"arguments_hash": a["arguments_hash"]}))
        assert r.status_code == 409  # no Content-Type: read as JSON
        r = agent.post(claim, content=b"{}", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
        r = agent.post("/v1/approvals", json={"run_id": RUN, "action": "a", "arguments": "x" * 5000})
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
        gzipped = gzip.compress(b'{"outcome": "executed"}')
        r = agent.post(outcome, content=gzipped, headers={**as_json, "content-encoding": "gzip"})
        assert r.status_code == 409 and "is pending, not claimed" in r.json()["detail"]
    r = httpx.post(f"{people.url}{claim}", json={"arguments_hash": a["arguments_hash"]})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    with closing(person(people, "amy")) as amy:
        for path, body in (("/v1/approvals", {}), (claim, {"arguments_hash": a["arguments_hash"]})):
            r = amy.post(path, json=body)
            assert r.status_code == 403 and "needs an API key" in r.json()["detail"], r.text


def test_who_may_decide(people: LiveServer) -> None:
    a = ask(people)
    with closing(person(people, "vic")) as vic:
        r = decide(vic, a)
        assert r.status_code == 403 and "approver role" in r.json()["detail"]
    with people.client() as agent:
        r = decide(agent, a)
        assert r.status_code == 403 and "needs a person" in r.json()["detail"]
    with people.client(admin=True) as admin_key:
        assert decide(admin_key, a).status_code == 403  # a key never decides, whatever its scope
    with closing(person(people, "amy")) as amy:
        assert amy.get(f"/v1/approvals/{a['id']}").json()["status"] == "pending"  # nothing changed
        stricter = ask(people, key="call_2", min_role="admin")
        r = decide(amy, stricter)
        assert r.status_code == 403 and "needs the admin role" in r.json()["detail"]
    with closing(person(people, "ada")) as ada:
        assert decide(ada, stricter).json()["decided_by"] == "ada"


def test_two_approvers_race_and_one_decision_lands(people: LiveServer) -> None:
    a = ask(people)
    clients = [person(people, "amy"), person(people, "bob")]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def go(client: httpx.Client, decision: str) -> None:
        barrier.wait()
        statuses.append(decide(client, a, decision, reason="no").status_code)

    threads = [
        threading.Thread(target=go, args=(c, d))
        for c, d in zip(clients, ("approved", "rejected"), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 409]
    for c in clients:
        c.close()


def test_the_queue_by_one_status_or_several(people: LiveServer) -> None:
    """The dashboard's tabs: pending alone oldest first; several statuses at once newest first."""
    first, second, third = (ask(people, key=f"call_{i}", arguments={"order": f"A-{i}"}) for i in range(3))
    with closing(person(people, "amy")) as amy:
        assert decide(amy, second).status_code == 200
        assert decide(amy, third, "rejected", reason="not this one").status_code == 200

        def ids(status: str) -> list[str]:
            r = amy.get("/v1/approvals", params={"status": status})
            assert r.status_code == 200, r.text
            return [a["id"] for a in r.json()["approvals"]]

        assert ids("pending") == [first["id"]]
        assert ids("approved, rejected,claimed") == [third["id"], second["id"]]
        assert ids("expired,cancelled") == []
        r = amy.get("/v1/approvals", params={"status": "approved,done"})
        assert r.status_code == 400 and r.json()["parameter"] == "status", r.text


def test_the_pending_count_is_the_queue_length_and_its_oldest(people: LiveServer) -> None:
    """What the navigation shows on every page, without downloading the queue."""
    with closing(person(people, "amy")) as amy:

        def pending() -> dict[str, Any]:
            r = amy.get("/v1/approvals/pending")
            assert r.status_code == 200, r.text
            return dict(r.json())

        before = pending()
        asked = [ask(people, key=f"count_{i}", arguments={"order": f"C-{i}"}) for i in range(3)]
        now = pending()
        assert now["pending"] == before["pending"] + 3
        queue = amy.get("/v1/approvals", params={"status": "pending", "limit": 500}).json()["approvals"]
        assert now["pending"] == len(queue)
        assert now["oldest_requested_at"] == queue[0]["requested_at"]
        assert decide(amy, asked[0]).status_code == 200
        assert pending()["pending"] == now["pending"] - 1


def test_never_actioned_stays_pending_and_can_still_be_decided(people: LiveServer) -> None:
    a = ask(people)
    with people.client() as agent:
        waited = agent.get(f"/v1/approvals/{a['id']}/wait", params={"timeout": 0.2}).json()
        assert waited["status"] == "pending"
        r = agent.post(f"/v1/approvals/{a['id']}/claim", json={"arguments_hash": a["arguments_hash"]})
        assert r.status_code == 409  # nothing to run: never by default
    with closing(person(people, "amy")) as amy:
        assert decide(amy, a, "rejected", reason="not this one").json()["status"] == "rejected"


def test_a_changed_argument_never_runs_under_an_old_approval(people: LiveServer) -> None:
    a = ask(people)
    with closing(person(people, "amy")) as amy:
        decide(amy, a)
    changed = ask(people, arguments={"order": "A-1", "usd": 4000})
    assert changed["id"] != a["id"] and changed["status"] == "pending"
    with people.client() as agent:
        r = agent.post(f"/v1/approvals/{a['id']}/claim", json={"arguments_hash": changed["arguments_hash"]})
        assert r.status_code == 409 and "not the ones approved" in r.json()["detail"]


def test_sessions_and_csrf(people: LiveServer) -> None:
    a = ask(people)
    anonymous = httpx.Client(base_url=people.url, timeout=30, headers=CSRF)
    assert anonymous.get("/v1/approvals").status_code == 401
    assert (
        anonymous.post("/v1/session", json={"login": "amy", "password": "wrong password!"}).status_code == 401
    )
    amy = person(people, "amy")
    cookie = amy.cookies.get("controlroom_session")
    assert cookie
    me = amy.get("/v1/session").json()
    assert me["login"] == "amy" and me["projects"] == [{"project": "acme", "role": "approver"}]
    body = {"decision": "approved", "arguments_hash": a["arguments_hash"]}
    path = f"/v1/approvals/{a['id']}/decision"
    no_header = httpx.Client(base_url=people.url, timeout=30, cookies={"controlroom_session": cookie})
    r = no_header.post(path, json=body)
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = no_header.post(path, json=body, headers={**CSRF, "Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = no_header.post(path, json=body, headers={**CSRF, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    assert no_header.get(f"/v1/approvals/{a['id']}").json()["status"] == "pending"
    r = no_header.post(
        path, json=body, headers={**CSRF, "Origin": people.url, "Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 200, r.text
    # a disabled user's session stops working at once
    with people.store.write() as conn:
        u.set_disabled(conn, user=u.user(conn, "amy"), disabled=True)
    assert amy.get("/v1/approvals").status_code == 401
    # logging out ends the session
    bob = person(people, "bob")
    assert bob.delete("/v1/session").status_code == 204
    assert bob.get("/v1/approvals").status_code == 401
    for c in (anonymous, amy, no_header, bob):
        c.close()


def test_another_project_s_requests_are_not_found(people: LiveServer) -> None:
    a = ask(people)
    with people.store.write() as conn:
        other = pr.create_project(conn, name="other")
        other_key = pr.create_key(conn, project=other).key
        stranger = u.create_user(conn, login="sam", password=PASSWORD)
        u.set_role(conn, user=stranger, project=other, role=u.Role.admin)
    with people.client(other_key) as key:
        assert key.get(f"/v1/approvals/{a['id']}").status_code == 404
        assert (
            key.post(
                f"/v1/approvals/{a['id']}/claim", json={"arguments_hash": a["arguments_hash"]}
            ).status_code
            == 404
        )
    with closing(person(people, "sam")) as sam:
        assert sam.get(f"/v1/approvals/{a['id']}").status_code == 404
        assert decide(sam, a).status_code == 404
        r = sam.get("/v1/approvals", headers={"Controlroom-Project": "acme"})
        assert r.status_code == 403


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_login_throttling_holds_across_two_server_processes(people: LiveServer) -> None:
    """The failure counters are rows: failures at one server process count at another."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import free_port
    from controlroom.accounts import sessions
    from tests_support import wait_for

    port = free_port()
    other = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("controlroom")),
            "serve",
            "--no-worker",
            "--db",
            people.store.url,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        other_url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{other_url}/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60)
        wrong = {"login": "amy", "password": "not the password!"}
        servers = [people.url, other_url]
        for i in range(sessions.ACCOUNT_LIMIT):  # the failures alternate between the two processes
            r = httpx.post(f"{servers[i % 2]}/v1/session", json=wrong, headers=CSRF, timeout=30)
            assert r.status_code == 401, r.text
        for url in servers:
            r = httpx.post(
                f"{url}/v1/session", json={"login": "amy", "password": PASSWORD}, headers=CSRF, timeout=30
            )
            assert r.status_code == 429 and r.json()["code"] == "too_many_requests", r.text
            assert int(r.headers["Retry-After"]) > 0
    finally:
        other.terminate()
        other.wait(30)
