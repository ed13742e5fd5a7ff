"""The published OpenAPI document is exact: real responses of every route — successes and the
problem documents — have a status, a media type and a body the document declares for them
(validated as JSON Schema 2020-12, the dialect of OpenAPI 3.1)."""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from api_support import ev, new_run_id, new_span_id, wait_projected
from jsonschema import Draft202012Validator

from conftest import LiveServer
from controlroom.accounts import projects
from controlroom.budget import ledger

RESERVE = "/v1/budget/reservations"


class Checked:
    """An HTTP client for ``live`` that checks every response against the published document
    and records which operations answered."""

    def __init__(self, live: LiveServer) -> None:
        self.doc: dict[str, Any] = httpx.get(f"{live.url}/openapi.json").json()
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in self.doc["paths"]
        ]
        self.http = httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {live.admin_key}"}, timeout=30
        )
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(self, method: str, path: str, status: int, **kwargs: Any) -> httpx.Response:
        r = self.http.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        template = next(t for rx, t in self.templates if rx.match(path.split("?")[0]))
        op = self.doc["paths"][template][method.lower()]
        declared = op["responses"].get(str(status))
        assert declared is not None, f"{method} {template} answered {status}, which is not documented"
        if not r.content:
            assert "content" not in declared, (method, template, status)
        else:
            media = r.headers["content-type"].split(";")[0]
            assert media in declared.get("content", {}), (method, template, status, media, declared)
            schema = declared["content"][media].get("schema")
            if schema is not None:
                Draft202012Validator({**schema, "components": self.doc["components"]}).validate(r.json())
        self.seen.add((method.lower(), template, status))
        return r

    def operations(self) -> set[tuple[str, str]]:
        return {(m, p) for p, ops in self.doc["paths"].items() for m in ops}


@pytest.fixture
def api(live: LiveServer) -> Iterator[Checked]:
    checked = Checked(live)
    yield checked
    checked.http.close()


def test_every_route_answers_as_documented(api: Checked, live: LiveServer) -> None:
    run_id, span_id, ts = new_run_id(), new_span_id(), time.time_ns() - 10**9
    events = [
        ev("run.started", run_id, ts, {"agent": "doc", "tags": ["x"]}),
        ev("span.started", run_id, ts, {"span_id": span_id, "name": "call", "kind": "llm"}),
        ev(
            "span.ended",
            run_id,
            ts + 1,
            {"span_id": span_id, "status": "ok", "model": "doc-1", "usage": {"input_tokens": 3}},
        ),
        ev("score.recorded", run_id, ts + 2, {"name": "ok", "value": 1.0, "source": "sdk"}),
        ev("run.ended", run_id, ts + 3, {"status": "succeeded"}),
    ]
    api("POST", "/v1/events", 200, json={"events": events})
    api("POST", "/v1/events", 400, content=b"{", headers={"content-type": "application/json"})
    api("POST", "/v1/events", 415, content=b"{}", headers={"content-type": "text/csv"})
    api("POST", "/v1/events", 413, json={"events": [{}] * 1001})
    api("POST", "/v1/events", 401, json={"events": events}, headers={"Authorization": "Bearer nope"})
    api("POST", "/v1/traces", 200, json={"resourceSpans": []})
    api("POST", "/v1/traces", 422, json=[1])
    api("POST", "/v1/traces", 415, content=b"x", headers={"content-type": "text/plain"})
    wait_projected(api.http)

    page = api("GET", "/v1/runs", 200, params={"limit": 1, "tag": "x"}).json()
    api("GET", "/v1/runs", 200, params={"cursor": f"{ts}_{run_id}", "since": "2001-01-01T00:00:00Z"})
    api("GET", "/v1/runs", 400, params={"status": "nope"})
    assert page["runs"][0]["run_id"] == run_id
    api("GET", f"/v1/runs/{run_id}", 200)
    api("GET", f"/v1/runs/{new_run_id()}", 404)
    api("GET", "/v1/runs/nothex", 400)
    api("GET", f"/v1/runs/{run_id}", 200, params={"payloads": "false"})
    api("GET", "/v1/runs", 200, params={"awaiting_approval": "true", "refused_by_cap": "true"})
    api("GET", f"/v1/runs/{run_id}/spans/{span_id}", 200)
    api("GET", f"/v1/runs/{run_id}/spans/{new_span_id()}", 404)
    api("GET", f"/v1/runs/{run_id}/spans/nothex", 400)
    api("GET", "/v1/costs/daily", 200, params={"group_by": "agent,model"})
    api("GET", "/v1/costs/daily", 400, params={"until": "soon"})
    api("GET", "/v1/health", 200, headers={"Authorization": ""})
    api("GET", "/v1/health", 400, params={"x": "\x00"})

    api("POST", "/v1/prices", 201, json={"model": "doc-1", "input_per_mtok": "1", "output_per_mtok": "2"})
    api("POST", "/v1/prices", 422, json={"model": "doc-1", "input_per_mtok": "x", "output_per_mtok": "2"})
    api("GET", "/v1/prices", 200)
    api("GET", "/v1/prices", 401, headers={"Authorization": ""})
    api("GET", "/v1/prices/models", 200)
    api("GET", "/v1/prices/models", 400, params={"days": "0"})

    # no cap yet: nothing is held (and expires_at is absent)
    free = api("POST", RESERVE, 201, json={"model": "doc-1", "input_tokens": 10}).json()
    assert free["reservation_id"] is None and "expires_at" not in free
    api("PUT", "/v1/budgets", 200, json={"cap_usd": "0.001"})
    api("PUT", "/v1/budgets", 422, json={"cap_usd": 1})
    api("GET", "/v1/budgets", 200)
    held = api(
        "POST", RESERVE, 201, json={"model": "doc-1", "input_tokens": 10, "max_output_tokens": 10}
    ).json()
    api("POST", RESERVE, 402, json={"model": "doc-1", "input_tokens": 10**6})
    api("POST", RESERVE, 402, json={"model": "unpriced-1", "input_tokens": 1})
    api("POST", RESERVE, 422, json={"model": "doc-1", "input_tokens": "10"})
    api("POST", RESERVE, 400, content=b"{", headers={"content-type": "application/json"})
    api("POST", RESERVE, 415, content=b"{}", headers={"content-type": "text/plain"})
    api("POST", RESERVE, 413, content=b" " * 70_000, headers={"content-type": "application/json"})
    api("POST", RESERVE, 401, json={"model": "doc-1", "input_tokens": 1}, headers={"Authorization": ""})
    body = {"model": "gpt-4o-mini", "input_tokens": 1, "max_output_tokens": 1, "reservation_id": "c3" * 16}
    api("POST", RESERVE, 201, json=body)
    with live.store.write() as conn:  # another project, capped: its reservations are held
        other_project = projects.ensure_project(conn, name="other")
        other = projects.create_key(conn, project=other_project).key
        ledger.set_budget(live.store, conn, project=other_project, agent=None, cap_usd="1")
    api("POST", RESERVE, 409, json=body, headers={"Authorization": f"Bearer {other}"})
    settle = f"{RESERVE}/{held['reservation_id']}/settle"
    api("POST", settle, 200, json={"outcome": "completed", "usage": {"input_tokens": 5, "output_tokens": 5}})
    api("POST", f"{RESERVE}/{'d4' * 16}/settle", 404, json={"outcome": "unknown"})
    api("POST", settle, 422, json={"outcome": "maybe"})
    api("DELETE", "/v1/budgets", 204)
    api("DELETE", "/v1/budgets", 404)

    people_and_approvals(api, live)
    administration(api, live)
    evals(api, run_id)
    assert {(m, p) for m, p, _ in api.seen} == api.operations()


def people_and_approvals(api: Checked, live: LiveServer) -> None:
    from argon2 import PasswordHasher

    from controlroom.accounts import passwords
    from controlroom.accounts import users as u

    passwords.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    try:
        with live.store.write() as conn:
            user = u.create_user(conn, login="doc-approver", password="a long enough password")
            acme = projects.get_project(conn, name="acme")
            assert acme is not None
            u.set_role(conn, user=user, project=acme, role=u.Role.approver)
        person = {"Authorization": "", "X-Controlroom-CSRF": "1"}  # the session cookie, as a browser
        login = {"login": "doc-approver", "password": "a long enough password"}
        api("POST", "/v1/session", 401, json={**login, "password": "not the password"}, headers=person)
        api("POST", "/v1/session", 403, json=login, headers={"Authorization": ""})  # no CSRF header
        api("POST", "/v1/session", 422, json={"login": "doc-approver"}, headers=person)
        api("POST", "/v1/session", 200, json=login, headers=person)
        api("GET", "/v1/session", 200, headers=person)
        api("GET", "/v1/session", 403)  # an API key has no session
        api("POST", RESERVE, 403, json={"model": "doc-1", "input_tokens": 1}, headers=person)  # keys reserve

        asked = {"run_id": new_run_id(), "action": "refund", "arguments": {"usd": 5}, "idempotency_key": "k1"}
        a = api("POST", "/v1/approvals", 201, json=asked).json()
        api("POST", "/v1/approvals", 200, json=asked)
        api("POST", "/v1/approvals", 422, json={**asked, "run_id": "0" * 32})
        api("POST", "/v1/approvals", 415, content=b"{}", headers={"content-type": "text/plain"})
        api("POST", "/v1/approvals", 413, content=b" " * (live.settings.max_body_bytes + 1))
        api("GET", "/v1/approvals", 200, params={"status": "pending"})
        api("GET", "/v1/approvals", 400, params={"status": "maybe"})
        api("GET", "/v1/approvals/pending", 200)
        api("GET", f"/v1/approvals/{a['id']}", 200, headers=person)
        api("GET", f"/v1/approvals/{'e' * 32}", 404)
        api("GET", f"/v1/approvals/{a['id']}/wait", 200, params={"timeout": 0.05})
        api("GET", f"/v1/approvals/{a['id']}/wait", 400, params={"timeout": 600})
        decision = {"decision": "approved", "arguments_hash": a["arguments_hash"]}
        path = f"/v1/approvals/{a['id']}"
        api("POST", f"{path}/decision", 403, json=decision)  # a key never decides
        api("POST", f"{path}/decision", 422, json={**decision, "decision": "rejected"}, headers=person)
        api("POST", f"{path}/decision", 200, json=decision, headers=person)
        api("POST", f"{path}/decision", 409, json=decision, headers=person)
        api("POST", f"{path}/claim", 200, json={"arguments_hash": a["arguments_hash"]})
        api("POST", f"{path}/claim", 409, json={"arguments_hash": a["arguments_hash"]})
        api(
            "POST", f"{path}/outcome", 200, json={"outcome": "failed", "error": {"type": "E", "message": "m"}}
        )
        api("POST", f"{path}/outcome", 409, json={"outcome": "executed"})
        other = api("POST", "/v1/approvals", 201, json={**asked, "idempotency_key": "k2"}).json()
        api("POST", f"/v1/approvals/{other['id']}/cancel", 200, json={"reason": "run ended"})
        api("POST", f"/v1/approvals/{other['id']}/cancel", 409, json={})
        third = api("POST", "/v1/approvals", 201, json={**asked, "idempotency_key": "k3"}).json()
        path = f"/v1/approvals/{third['id']}"
        api(
            "POST",
            f"{path}/decision",
            200,
            json={**decision, "arguments_hash": third["arguments_hash"]},
            headers=person,
        )
        api("POST", f"{path}/claim", 200, json={"arguments_hash": third["arguments_hash"]})
        resolution = {"outcome": "executed", "reason": "the refund is in the bank"}
        api("POST", f"{path}/resolution", 403, json=resolution)  # a key never resolves as a person
        api("POST", f"{path}/resolution", 200, json=resolution, headers=person)
        api("POST", f"{path}/resolution", 409, json=resolution, headers=person)
        api("DELETE", "/v1/session", 204, headers=person)
        api("DELETE", "/v1/session", 401, headers=person)
    finally:
        passwords.use_hasher(None)


def administration(api: Checked, live: LiveServer) -> None:
    from argon2 import PasswordHasher

    from conftest import free_port
    from controlroom.accounts import passwords
    from controlroom.accounts import users as u

    passwords.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    try:
        keys = api("GET", "/v1/keys", 200).json()["keys"]
        api("GET", "/v1/keys", 401, headers={"Authorization": ""})
        new = api("POST", "/v1/keys", 201, json={"name": "doc", "scope": "agent"}).json()
        api("POST", "/v1/keys", 422, json={"scope": "root"})
        api("DELETE", f"/v1/keys/{new['id']}", 204)
        api("DELETE", f"/v1/keys/{new['id']}", 404)
        api("DELETE", f"/v1/keys/{next(k['id'] for k in keys if k['name'] == 'admin')}", 409)
        api("DELETE", "/v1/keys/0", 400)

        user = {"login": "doc-admin", "password": "a long enough password", "role": "admin"}
        api("POST", "/v1/users", 201, json=user)
        api("POST", "/v1/users", 409, json=user)
        api("POST", "/v1/users", 422, json={**user, "password": "short"})
        api("GET", "/v1/users", 200)
        api("PATCH", "/v1/users/doc-approver", 200, json={"role": "viewer"})
        api("PATCH", "/v1/users/nobody", 404, json={"role": "viewer"})
        api("PATCH", "/v1/users/doc-admin", 409, json={"disabled": True})  # the last admin
        api("PATCH", "/v1/users/-x", 400, json={})
        api("PATCH", "/v1/users/doc-admin", 422, json={"disabled": "yes"})
        with live.store.write() as conn:  # in a project this key does not administer
            other = projects.get_project(conn, name="other")
            assert other is not None
            u.set_role(conn, user=u.user(conn, "doc-approver"), project=other, role=u.Role.viewer)
        api("PATCH", "/v1/users/doc-approver", 403, json={"disabled": True})
        api("DELETE", "/v1/users/doc-approver", 204)
        api("DELETE", "/v1/users/doc-approver", 404)

        down = {"url": f"http://127.0.0.1:{free_port()}/hook"}
        hook = api("POST", "/v1/webhooks", 201, json=down).json()
        api("POST", "/v1/webhooks", 422, json={"url": "ftp://x"})
        api("GET", "/v1/webhooks", 200)
        assert api("POST", f"/v1/webhooks/{hook['id']}/test", 200).json()["delivered"] is False
        api("POST", "/v1/webhooks/999/test", 404)
        api("GET", f"/v1/webhooks/{hook['id']}/deliveries", 200, params={"limit": 10})
        api("GET", "/v1/webhooks/999/deliveries", 404)
        policy = {
            "min_role": "admin",
            "four_eyes": True,
            "expires_after_seconds": 60.5,
            "notify": [hook["id"]],
        }
        api("PUT", "/v1/approval-policies/refund", 200, json=policy)
        api("PUT", "/v1/approval-policies/refund", 422, json={**policy, "notify": [999]})
        api("GET", "/v1/approval-policies", 200)
        api("DELETE", "/v1/approval-policies/refund", 204)
        api("DELETE", "/v1/approval-policies/refund", 404)
        api("DELETE", f"/v1/webhooks/{hook['id']}", 204)
        api("DELETE", f"/v1/webhooks/{hook['id']}", 404)
        api("POST", f"/v1/webhooks/{hook['id']}/test", 409)
    finally:
        passwords.use_hasher(None)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_gzip_reservation_body_is_read_like_any_other(api: Checked) -> None:
    """The fast routes read bodies with the server's one body reader: gzip included."""
    api("POST", "/v1/prices", 201, json={"model": "doc-1", "input_per_mtok": "1", "output_per_mtok": "1"})
    api("PUT", "/v1/budgets", 200, json={"cap_usd": "1"})
    body = gzip.compress(orjson.dumps({"model": "doc-1", "input_tokens": 1000, "max_output_tokens": 4000}))
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    held = api("POST", RESERVE, 201, content=body, headers=headers).json()
    assert held["hold_usd"] == "0.005"
    api("POST", RESERVE, 400, content=b"not gzip", headers=headers)
    settle = gzip.compress(orjson.dumps({"outcome": "failed_before_generation"}))
    out = api(
        "POST", f"{RESERVE}/{held['reservation_id']}/settle", 200, content=settle, headers=headers
    ).json()
    assert out["state"] == "released"


def evals(api: Checked, run_id: str) -> None:
    config = {"name": "doc-succeeded", "evaluator": "run_succeeded", "trigger": "manual"}
    api("POST", "/v1/evals/configs", 201, json=config)
    api("POST", "/v1/evals/configs", 409, json=config)
    api("POST", "/v1/evals/configs", 422, json={**config, "name": "doc-2", "evaluator": "no_such_thing"})
    api("POST", "/v1/evals/configs", 422, json={**config, "name": "bad name"})
    api("GET", "/v1/evals/configs", 200)
    api("GET", "/v1/evals/configs/doc-succeeded", 200)
    api("GET", "/v1/evals/configs/nothing-here", 404)
    api("PATCH", "/v1/evals/configs/doc-succeeded", 200, json={"paused": False})
    api("PATCH", "/v1/evals/configs/doc-succeeded", 422, json={"paused": "maybe"})
    api("PATCH", "/v1/evals/configs/nothing-here", 404, json={"paused": True})
    path = "/v1/evals/configs/doc-succeeded/jobs"
    preview = api("POST", path, 200, json={"since": "2001-01-01T00:00:00Z", "dry_run": True}).json()
    assert preview["runs"] >= 1
    job = api("POST", path, 201, json={"since": "2001-01-01T00:00:00Z"}).json()
    api("POST", path, 422, json={"since": "2030-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z"})
    api("POST", "/v1/evals/configs/nothing-here/jobs", 404, json={})
    api("GET", "/v1/evals/jobs", 200, params={"config": "doc-succeeded"})
    api("GET", "/v1/evals/jobs", 404, params={"config": "nothing-here"})
    api("GET", f"/v1/evals/jobs/{job['id']}", 200)
    api("GET", "/v1/evals/jobs/999999", 404)
    api("GET", "/v1/evals/jobs/0", 400)
    queued = api("POST", path, 201, json={"since": "2001-01-01T00:00:00Z"}).json()
    cancel = api.http.post(f"/v1/evals/jobs/{queued['id']}/cancel")  # unless a worker finished it first
    assert cancel.status_code in (200, 409)
    api("POST", f"/v1/evals/jobs/{queued['id']}/cancel", 409)
    api("POST", "/v1/evals/jobs/999999/cancel", 404)
    api("GET", "/v1/evals/regressions", 200, params={"state": "all"})
    api("GET", "/v1/evals/regressions", 400, params={"state": "maybe"})
    api("POST", "/v1/evals/regressions/check", 200)
    api("GET", "/v1/overview", 200)
    api("GET", "/v1/overview", 200, params={"window": "7d"})
    api("GET", "/v1/overview", 400, params={"window": "1y"})
    api("GET", "/v1/evals/settings", 200)
    api("PUT", "/v1/evals/settings", 200, json={"recent_days": 2, "compare": "agent_version"})
    api("PUT", "/v1/evals/settings", 422, json={"margin": 2})
    api("POST", "/v1/scores", 201, json={"run_id": run_id, "name": "by-hand", "value": 0.5})
    api("POST", "/v1/scores", 404, json={"run_id": new_run_id(), "name": "by-hand", "value": 0.5})
    api("POST", "/v1/scores", 422, json={"run_id": run_id, "name": "by-hand"})
    api("GET", "/v1/scores/daily", 200, params={"since": "2001-01-01"})
    api("GET", "/v1/scores/daily", 400, params={"since": "yesterday"})
    api("GET", "/v1/scores/daily", 200, params={"since": "", "until": "7845-10-17"})  # past 2262: clamped
