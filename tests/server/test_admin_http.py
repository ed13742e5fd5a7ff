"""The project's administration over real HTTP, on both databases: keys, people, approval policies
and webhooks. Admins (an admin key, a person with the admin role) may change them; agent keys,
viewers and approvers are refused and nothing changes; another project's things are not found;
secrets are shown once; a test delivery reaches a real receiver signed; a policy's ``notify``
decides which webhooks hear of an action's approvals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from api_support import assert_problem
from sqlalchemy import select

from conftest import LiveServer, free_port
from controlroom.accounts import projects as pr
from controlroom.accounts import sessions
from controlroom.accounts import users as u
from controlroom.notifications import signing
from controlroom.store.tables import api_keys
from tests_support import wait_for

PASSWORD = "a long enough password"
RUN = "4bf92f3577b34da6a3ce929d0e0e4736"
CSRF = {"X-Controlroom-CSRF": "1"}

pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest.fixture
def people(live: LiveServer) -> LiveServer:
    """acme's people: a viewer, an approver and an admin."""
    with live.store.write() as conn:
        p = pr.get_project(conn, name="acme")
        assert p is not None
        for login, role in (("vic", u.Role.viewer), ("amy", u.Role.approver), ("ada", u.Role.admin)):
            u.set_role(conn, user=u.create_user(conn, login=login, password=PASSWORD), project=p, role=role)
    return live


def person(live: LiveServer, login: str, password: str = PASSWORD) -> httpx.Client:
    """A browser-like client logged in as ``login`` (its cookie, the CSRF header on changes)."""
    client = httpx.Client(base_url=live.url, timeout=30, headers=CSRF)
    r = client.post("/v1/session", json={"login": login, "password": password})
    assert r.status_code == 200, r.text
    return client


def other_project(live: LiveServer) -> tuple[pr.Project, str]:
    """A second project and an admin key of it."""
    with live.store.write() as conn:
        other = pr.create_project(conn, name="other")
        return other, pr.create_key(conn, project=other, name="other-admin", scope="admin").key


@dataclass
class Receiver:
    url: str
    status: int = 204
    received: list[dict[str, Any]] = field(default_factory=list)

    def bodies(self) -> list[Any]:
        return [orjson.loads(r["body"]) for r in self.received]


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Two webhook receivers, each a real HTTP server on a free loopback port."""
    servers, made = [], []
    for _ in range(2):
        state = Receiver("")

        class Handler(BaseHTTPRequestHandler):
            me = state

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.me.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(self.me.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?team=ops"
        servers.append(server)
        made.append(state)
    yield made
    for server in servers:
        server.shutdown()
        server.server_close()


# -- the published webhook URL pattern is the domain's check -----------------------------------------


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:8080/hook?team=ops", True),
        ("HTTPS://hooks.slack.com/services/T0/B0/X", True),
        ("http://receiver_1.internal.", True),
        ("https://example.com:65535/", True),
        ("https://example.com:65536/", False),
        ("http://user:pass@example.com/", False),
        ("http://a..b/", False),
        ("http://" + "a" * 64 + ".com/", False),
        ("http://[::1]/", False),
        ("http://example.com/a b", False),
        ("http://example.com/é", False),
        ("ftp://example.com/", False),
        ("http:///x", False),
    ],
)
def test_a_webhook_url_the_schema_allows_is_one_the_server_takes(url: str, ok: bool) -> None:
    from pydantic import ValidationError

    from controlroom.errors import ValidationFailed
    from controlroom.notifications.webhooks import check_url
    from controlroom.server.admin_schemas import WebhookIn

    try:
        WebhookIn.model_validate({"url": url})
        schema_ok = True
    except ValidationError:
        schema_ok = False
    try:
        check_url(url)
        domain_ok = True
    except ValidationFailed:
        domain_ok = False
    assert schema_ok == domain_ok == ok


# -- keys ------------------------------------------------------------------------------------------


def test_keys_are_listed_without_secrets_created_once_and_revoked_at_once(live: LiveServer) -> None:
    with live.client(admin=True) as admin:
        made = admin.post("/v1/keys", json={"name": "ci", "scope": "agent"})
        assert made.status_code == 201, made.text
        new = made.json()
        assert new["key"].startswith("cr_") and new["prefix"] == new["key"][:10]
        assert (new["name"], new["scope"], new["revoked_at"]) == ("ci", "agent", None)
        listing = admin.get("/v1/keys")
    assert listing.status_code == 200
    keys = listing.json()["keys"]
    assert [k["name"] for k in keys] == ["default", "admin", "ci"]
    assert (
        new["key"] not in listing.text and live.key not in listing.text and live.admin_key not in listing.text
    )
    assert all(
        set(k) == {"id", "name", "prefix", "scope", "created_at", "revoked_at", "last_used_at"} for k in keys
    )

    with live.client(new["key"]) as ci:
        assert ci.get("/v1/runs").status_code == 200
        with live.client(admin=True) as admin:
            assert admin.delete(f"/v1/keys/{new['id']}").status_code == 204
            assert_problem(admin.delete(f"/v1/keys/{new['id']}"), 404, "not_found", "no active API key")
            revoked = next(k for k in admin.get("/v1/keys").json()["keys"] if k["id"] == new["id"])
        assert revoked["revoked_at"] is not None
        assert_problem(ci.get("/v1/runs"), 401, "unauthorized")  # at once, though it was cached


def test_a_key_s_last_use_is_listed_and_written_at_most_once_a_minute(live: LiveServer) -> None:
    with live.client(admin=True) as admin:
        new = admin.post("/v1/keys", json={"name": "ci"}).json()
        assert new["last_used_at"] is None
        listed = {k["name"]: k for k in admin.get("/v1/keys").json()["keys"]}
    assert listed["ci"]["last_used_at"] is None  # never used
    assert listed["admin"]["last_used_at"] is not None  # the listing itself used it
    with live.client(new["key"]) as ci:
        assert ci.get("/v1/runs").status_code == 200
        assert ci.get("/v1/keys").status_code == 200
        first = next(k for k in ci.get("/v1/keys").json()["keys"] if k["name"] == "ci")["last_used_at"]
    assert first is not None and first >= new["created_at"]

    # the cache forgotten (another process, or 30 s later): a use within the minute writes nothing
    with live.store.read() as conn:
        at = conn.execute(select(api_keys.c.last_used_at).where(api_keys.c.id == new["id"])).scalar_one()
    with live.store.write() as conn:
        pr.key_used(conn, key_hash=pr.hash_key(new["key"]), at_ns=at + pr.KEY_USE_RESOLUTION_NS - 1)
        assert (
            conn.execute(select(api_keys.c.last_used_at).where(api_keys.c.id == new["id"])).scalar_one() == at
        )
        pr.key_used(conn, key_hash=pr.hash_key(new["key"]), at_ns=at - 10 * pr.KEY_USE_RESOLUTION_NS)
        assert (
            conn.execute(select(api_keys.c.last_used_at).where(api_keys.c.id == new["id"])).scalar_one() == at
        )
        later = at + pr.KEY_USE_RESOLUTION_NS
        pr.key_used(conn, key_hash=pr.hash_key(new["key"]), at_ns=later)
        assert (
            conn.execute(select(api_keys.c.last_used_at).where(api_keys.c.id == new["id"])).scalar_one()
            == later
        )


def test_a_key_whose_use_cannot_be_recorded_still_works(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.exc import OperationalError

    from controlroom.server import deps

    def locked(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("UPDATE api_keys", {}, Exception("database is locked"))

    with live.client(admin=True) as admin:
        new = admin.post("/v1/keys", json={"name": "ci"}).json()
    monkeypatch.setattr(deps, "key_used", locked)
    with live.client(new["key"]) as ci:
        assert ci.get("/v1/runs").status_code == 200
        assert next(k for k in ci.get("/v1/keys").json()["keys"] if k["name"] == "ci")["last_used_at"] is None
    assert "could not record the use of an API key of acme" in caplog.text


def test_an_admin_key_makes_admin_keys_and_cannot_revoke_itself(live: LiveServer) -> None:
    with live.client(admin=True) as admin:
        r = admin.post("/v1/keys", json={"name": "ops", "scope": "admin"})
        assert r.status_code == 201 and r.json()["scope"] == "admin"
        ops_id, ops = r.json()["id"], r.json()["key"]
        assert_problem(admin.post("/v1/keys", json={"scope": "root"}), 422, "validation_failed")
        assert_problem(admin.post("/v1/keys", json={"name": ""}), 422, "validation_failed")
    with live.client(ops) as ops_client:
        assert_problem(ops_client.delete(f"/v1/keys/{ops_id}"), 409, "conflict", "cannot revoke itself")
        assert ops_client.get("/v1/keys").status_code == 200  # still working
        admin_id = next(k["id"] for k in ops_client.get("/v1/keys").json()["keys"] if k["name"] == "admin")
        assert ops_client.delete(f"/v1/keys/{admin_id}").status_code == 204  # another admin key: fine


def test_another_project_s_keys_are_not_found(live: LiveServer) -> None:
    _, other_admin = other_project(live)
    with live.client(other_admin) as other:
        theirs = other.get("/v1/keys").json()["keys"]
        assert [k["name"] for k in theirs] == ["other-admin"]
        with live.client(admin=True) as admin:
            ours = [k["id"] for k in admin.get("/v1/keys").json()["keys"]]
        for key_id in ours:
            assert_problem(other.delete(f"/v1/keys/{key_id}"), 404, "not_found")
    with live.client() as agent:
        assert agent.get("/v1/runs").status_code == 200  # not revoked


# -- who may administer -------------------------------------------------------------------------------


CHANGES = [
    ("POST", "/v1/keys", {"name": "x"}),
    ("DELETE", "/v1/keys/1", None),
    ("POST", "/v1/users", {"login": "zed", "password": PASSWORD, "role": "admin"}),
    ("PATCH", "/v1/users/vic", {"role": "admin"}),
    ("DELETE", "/v1/users/vic", None),
    ("PUT", "/v1/approval-policies/refund", {"min_role": "viewer"}),
    ("DELETE", "/v1/approval-policies/deploy", None),
    ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/x"}),
    ("DELETE", "/v1/webhooks/1", None),
    ("POST", "/v1/webhooks/1/test", None),
]
READS = ["/v1/keys", "/v1/users", "/v1/approval-policies", "/v1/webhooks", "/v1/webhooks/1/deliveries"]


def _state(live: LiveServer) -> Any:
    """What a change could have changed (a key's last use is not: using a key records it)."""
    with live.client(admin=True) as admin:
        state = [admin.get(path).json() for path in READS]
    for listing in state:
        for k in listing.get("keys", []):
            k.pop("last_used_at")
    return state


def test_agent_keys_viewers_and_approvers_are_refused_and_nothing_changes(
    people: LiveServer, receivers: list[Receiver]
) -> None:
    with people.client(admin=True) as admin:
        assert admin.post("/v1/webhooks", json={"url": receivers[0].url}).status_code == 201
        assert admin.put("/v1/approval-policies/deploy", json={}).status_code == 200
    before = _state(people)
    callers = [people.client(), person(people, "vic"), person(people, "amy")]
    try:
        for caller in callers:
            for method, path, body in CHANGES:
                r = caller.request(method, path, json=body)
                assert_problem(r, 403, "forbidden", "needs an admin")
            for path in READS:  # reading is open to every key and role
                assert caller.get(path).status_code == 200, path
    finally:
        for caller in callers:
            caller.close()
    assert _state(people) == before
    assert receivers[0].received == []


def test_an_admin_person_administers_through_the_session(
    people: LiveServer, receivers: list[Receiver]
) -> None:
    with closing(person(people, "ada")) as ada:
        r = ada.post("/v1/webhooks", json={"url": receivers[0].url, "format": "slack"})
        assert r.status_code == 201, r.text
        assert ada.put("/v1/approval-policies/refund", json={"notify": [r.json()["id"]]}).status_code == 200
        assert ada.post("/v1/keys", json={"name": "bot"}).status_code == 201
        no_csrf = ada.post("/v1/keys", json={"name": "bot"}, headers={"X-Controlroom-CSRF": ""})
        assert_problem(no_csrf, 403, "csrf_failed")


# -- people ----------------------------------------------------------------------------------------


def test_users_are_created_listed_changed_and_removed(people: LiveServer) -> None:
    with people.client(admin=True) as admin:
        r = admin.post(
            "/v1/users", json={"login": "Zoe@Example.com", "password": PASSWORD, "role": "approver"}
        )
        assert r.status_code == 201, r.text
        assert PASSWORD not in r.text
        assert r.json() == {
            "login": "zoe@example.com",
            "name": "zoe@example.com",
            "role": "approver",
            "disabled": False,
            "created_at": r.json()["created_at"],
        }
        again = admin.post(
            "/v1/users", json={"login": "zoe@example.com", "password": PASSWORD, "role": "viewer"}
        )
        assert_problem(again, 409, "conflict", "already exists")
        weak = admin.post("/v1/users", json={"login": "yan", "password": "short", "role": "viewer"})
        assert_problem(weak, 422, "validation_failed")
        assert PASSWORD not in weak.text
        listing = admin.get("/v1/users")
        assert listing.status_code == 200 and PASSWORD not in listing.text
        assert [(x["login"], x["role"]) for x in listing.json()["users"]] == [
            ("ada", "admin"),
            ("amy", "approver"),
            ("vic", "viewer"),
            ("zoe@example.com", "approver"),
        ]

    with closing(person(people, "zoe@example.com")) as zoe:
        with people.client(admin=True) as admin:
            r = admin.patch("/v1/users/ZOE@example.com", json={"role": "admin"})
        assert r.status_code == 200 and r.json()["role"] == "admin"
        assert_problem(zoe.get("/v1/session"), 401, "unauthorized")  # a role change ends the sessions

    new_password = "another long password"
    with closing(person(people, "zoe@example.com")) as zoe:
        with people.client(admin=True) as admin:
            r = admin.patch("/v1/users/zoe@example.com", json={"password": new_password})
        assert r.status_code == 200 and new_password not in r.text
        assert_problem(zoe.get("/v1/session"), 401, "unauthorized")
    r = httpx.post(
        f"{people.url}/v1/session", json={"login": "zoe@example.com", "password": PASSWORD}, headers=CSRF
    )
    assert_problem(r, 401, "unauthorized")

    with closing(person(people, "zoe@example.com", new_password)) as zoe:
        with people.client(admin=True) as admin:
            r = admin.patch("/v1/users/zoe@example.com", json={"disabled": True})
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert_problem(zoe.get("/v1/session"), 401, "unauthorized")
    with people.client(admin=True) as admin:
        assert admin.patch("/v1/users/zoe@example.com", json={"disabled": False}).json()["disabled"] is False
        assert admin.delete("/v1/users/zoe@example.com").status_code == 204
        assert "zoe@example.com" not in admin.get("/v1/users").text
        assert_problem(admin.delete("/v1/users/zoe@example.com"), 404, "not_found")
        assert_problem(admin.patch("/v1/users/zoe@example.com", json={"disabled": True}), 404, "not_found")
        # a role adds an existing user back; their password is the one they had
        assert admin.patch("/v1/users/zoe@example.com", json={"role": "viewer"}).json()["role"] == "viewer"
        assert_problem(admin.patch("/v1/users/nobody", json={"role": "viewer"}), 404, "not_found")
        assert_problem(admin.patch("/v1/users/-bad", json={}), 400, "invalid_query")
    person(people, "zoe@example.com", new_password).close()


def test_no_change_leaves_the_project_without_an_active_admin(people: LiveServer) -> None:
    with people.client(admin=True) as admin:
        for method, body in (
            ("PATCH", {"role": "approver"}),
            ("PATCH", {"disabled": True}),
            ("DELETE", None),
        ):
            r = admin.request(method, "/v1/users/ada", json=body)
            assert_problem(r, 409, "conflict", "without an active admin")
        assert ("ada", "admin", False) in [
            (x["login"], x["role"], x["disabled"]) for x in admin.get("/v1/users").json()["users"]
        ]
        assert admin.patch("/v1/users/amy", json={"role": "admin"}).status_code == 200
        assert admin.patch("/v1/users/ada", json={"role": "viewer"}).status_code == 200  # amy is admin now
        assert_problem(admin.patch("/v1/users/amy", json={"disabled": True}), 409, "conflict")


def test_two_admins_demoting_each_other_at_once_leave_one_admin(people: LiveServer) -> None:
    """Each change alone would leave an admin; both together would leave none: one is refused."""
    with people.client(admin=True) as admin:
        assert admin.patch("/v1/users/amy", json={"role": "admin"}).status_code == 200
    for attempt in range(5):
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def demote(login: str, barrier: threading.Barrier, statuses: list[int]) -> None:
            with people.client(admin=True) as admin:
                barrier.wait()
                statuses.append(admin.patch(f"/v1/users/{login}", json={"role": "viewer"}).status_code)

        threads = [
            threading.Thread(target=demote, args=(login, barrier, statuses)) for login in ("ada", "amy")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(statuses) == [200, 409], (attempt, statuses)
        with people.client(admin=True) as admin:
            admins = [x["login"] for x in admin.get("/v1/users").json()["users"] if x["role"] == "admin"]
            assert len(admins) == 1
            viewer = "amy" if admins == ["ada"] else "ada"
            assert admin.patch(f"/v1/users/{viewer}", json={"role": "admin"}).status_code == 200


def test_users_of_projects_the_caller_does_not_administer_are_left_to_the_cli(people: LiveServer) -> None:
    other, _ = other_project(people)
    with people.store.write() as conn:
        amy = u.user(conn, "amy")
        u.set_role(conn, user=amy, project=other, role=u.Role.viewer)
    with people.client(admin=True) as admin:
        for body in ({"disabled": True}, {"password": "a brand new password"}):
            r = admin.patch("/v1/users/amy", json=body)
            assert_problem(r, 403, "forbidden", "use the CLI")
        assert (
            admin.patch("/v1/users/amy", json={"role": "viewer"}).status_code == 200
        )  # roles are per project
    sessions.authenticate(people.store, login="amy", password=PASSWORD, address=None)  # unchanged
    # a person who administers both projects may
    with people.store.write() as conn:
        u.set_role(conn, user=u.user(conn, "ada"), project=other, role=u.Role.admin)
    with closing(person(people, "ada")) as ada:
        r = ada.patch("/v1/users/amy", json={"disabled": True}, headers={"Controlroom-Project": "acme"})
        assert r.status_code == 200 and r.json()["disabled"] is True


def test_another_project_s_users_are_not_found(people: LiveServer) -> None:
    _, other_admin = other_project(people)
    with people.client(other_admin) as other:
        assert other.get("/v1/users").json()["users"] == []
        assert_problem(other.patch("/v1/users/vic", json={"disabled": True}), 404, "not_found")
        assert_problem(other.delete("/v1/users/vic"), 404, "not_found")
    with people.client(admin=True) as admin:
        assert "vic" in admin.get("/v1/users").text


# -- approval policies ---------------------------------------------------------------------------


def test_policies_are_set_listed_and_removed(live: LiveServer, receivers: list[Receiver]) -> None:
    _, other_admin = other_project(live)
    with live.client(other_admin) as other:
        theirs = other.post("/v1/webhooks", json={"url": receivers[1].url}).json()["id"]
    with live.client(admin=True) as admin:
        hook = admin.post("/v1/webhooks", json={"url": receivers[0].url}).json()["id"]
        body = {"min_role": "admin", "four_eyes": True, "expires_after_seconds": 600, "notify": [hook]}
        r = admin.put("/v1/approval-policies/refund", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"action": "refund", **body}
        assert admin.put("/v1/approval-policies/db.write", json={}).json() == {
            "action": "db.write",
            "min_role": "approver",
            "four_eyes": False,
            "expires_after_seconds": None,
            "notify": None,
        }
        assert admin.put("/v1/approval-policies/a/b", json={"notify": []}).json()["notify"] == []
        bad = admin.put("/v1/approval-policies/refund", json={"notify": [theirs]})
        assert_problem(bad, 422, "validation_failed", "notify names no webhook of this project")
        assert bad.json()["field"] == "notify"
        assert_problem(
            admin.put("/v1/approval-policies/refund", json={"min_role": "owner"}), 422, "validation_failed"
        )
        assert_problem(
            admin.put("/v1/approval-policies/refund", json={"expires_after_seconds": 0}),
            422,
            "validation_failed",
        )
        listing = admin.get("/v1/approval-policies").json()["policies"]
        assert [p["action"] for p in listing] == ["a/b", "db.write", "refund"]
        assert listing[2]["notify"] == [hook] and listing[2]["min_role"] == "admin"
        assert admin.delete("/v1/approval-policies/db.write").status_code == 204
        assert_problem(admin.delete("/v1/approval-policies/db.write"), 404, "not_found")
    with live.client(other_admin) as other:
        assert other.get("/v1/approval-policies").json()["policies"] == []
        assert_problem(other.delete("/v1/approval-policies/refund"), 404, "not_found")
    # the policy is the one requests get
    with live.client() as agent:
        asked = {"run_id": RUN, "action": "refund", "arguments": {"usd": 5}, "idempotency_key": "k"}
        a = agent.post("/v1/approvals", json=asked).json()
    assert (a["min_role"], a["four_eyes"]) == ("admin", True) and a["expires_at"] is not None


# -- webhooks --------------------------------------------------------------------------------------


def test_webhooks_show_their_secret_once_and_are_disabled(
    people: LiveServer, receivers: list[Receiver]
) -> None:
    slack_url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    with people.client(admin=True) as admin:
        r = admin.post(
            "/v1/webhooks",
            json={
                "url": slack_url,
                "format": "slack",
                "event_types": ["approval.decided", "approval.decided"],
            },
        )
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["secret"].startswith("whsec_") and hook["url"] == slack_url and hook["active"] is True
        assert hook["event_types"] == ["approval.decided"]
        listing = admin.get("/v1/webhooks")
        assert hook["secret"] not in listing.text and "secret" not in listing.json()["webhooks"][0]
        assert listing.json()["webhooks"][0]["url"] == slack_url  # whole, for an admin
        for bad in (
            {"url": "ftp://example.com/x"},
            {"url": "http://user:pass@example.com/"},
            {"url": "http://example.com/é"},
            {"url": "http://example.com:70000/"},
            {"url": receivers[0].url, "format": "xml"},
            {"url": receivers[0].url, "event_types": []},
            {"url": receivers[0].url, "event_types": ["run.ended"]},
        ):
            assert_problem(admin.post("/v1/webhooks", json=bad), 422, "validation_failed")
    for viewer in (people.client(), person(people, "vic")):
        with closing(viewer):
            (seen,) = viewer.get("/v1/webhooks").json()["webhooks"]
            assert (
                seen["url"] == "https://hooks.slack.com/…"
                and "XXXXSECRET" not in viewer.get("/v1/webhooks").text
            )
    with people.client(admin=True) as admin:
        assert admin.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert_problem(admin.delete(f"/v1/webhooks/{hook['id']}"), 404, "not_found")
        (gone,) = admin.get("/v1/webhooks").json()["webhooks"]
        assert gone["active"] is False and gone["disabled_at"] is not None
        assert_problem(admin.post(f"/v1/webhooks/{hook['id']}/test"), 409, "conflict", "disabled")


def test_another_project_s_webhooks_are_not_found(live: LiveServer, receivers: list[Receiver]) -> None:
    _, other_admin = other_project(live)
    with live.client(admin=True) as admin:
        hook = admin.post("/v1/webhooks", json={"url": receivers[0].url}).json()["id"]
    with live.client(other_admin) as other:
        assert other.get("/v1/webhooks").json()["webhooks"] == []
        assert_problem(other.get(f"/v1/webhooks/{hook}/deliveries"), 404, "not_found")
        assert_problem(other.post(f"/v1/webhooks/{hook}/test"), 404, "not_found")
        assert_problem(other.delete(f"/v1/webhooks/{hook}"), 404, "not_found")
    assert receivers[0].received == []
    with live.client(admin=True) as admin:
        assert admin.get("/v1/webhooks").json()["webhooks"][0]["active"] is True


def test_a_test_delivery_is_signed_verifiable_and_logged(live: LiveServer, receivers: list[Receiver]) -> None:
    got = receivers[0]
    with live.client(admin=True) as admin:
        hook = admin.post("/v1/webhooks", json={"url": got.url}).json()
        r = admin.post(f"/v1/webhooks/{hook['id']}/test")
        assert r.status_code == 200, r.text
        result = r.json()
        assert (result["delivered"], result["status"], result["error"]) == (True, 204, None)
        (delivery,) = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    (sent,) = got.received
    headers = sent["headers"]
    assert signing.verify(
        hook["secret"], sent["body"], headers["Controlroom-Timestamp"], headers["Controlroom-Signature"]
    )
    assert headers["Controlroom-Event"] == "webhook.test" and headers["Controlroom-Delivery"] == str(
        result["delivery_id"]
    )
    doc = orjson.loads(sent["body"])
    assert (doc["type"], doc["project"], doc["webhook_id"]) == ("webhook.test", "acme", hook["id"])
    assert delivery["id"] == result["delivery_id"] and delivery["event_id"] == doc["event_id"]
    assert (delivery["event_type"], delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "webhook.test",
        "delivered",
        1,
        204,
    )
    assert delivery["delivered_at"] is not None and delivery["next_attempt_at"] is None

    slack = receivers[1]
    with live.client(admin=True) as admin:
        hook = admin.post("/v1/webhooks", json={"url": slack.url, "format": "slack"}).json()
        assert admin.post(f"/v1/webhooks/{hook['id']}/test").json()["delivered"] is True
    (message,) = slack.bodies()
    assert message["text"] == "[acme] a test delivery from controlroom: this webhook works"


def test_a_receiver_that_is_down_or_failing_is_a_recorded_failure(
    live: LiveServer, receivers: list[Receiver]
) -> None:
    with live.client(admin=True) as admin:
        down = admin.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/x"}).json()
        r = admin.post(f"/v1/webhooks/{down['id']}/test")
        assert r.status_code == 200, r.text
        assert r.json()["delivered"] is False and r.json()["status"] is None
        assert "Connection" in r.json()["error"]
        (d,) = admin.get(f"/v1/webhooks/{down['id']}/deliveries").json()["deliveries"]
        assert (d["state"], d["attempts"], d["last_status"], d["last_error"]) == (
            "failed",
            1,
            None,
            r.json()["error"],
        )

        receivers[0].status = 500
        failing = admin.post("/v1/webhooks", json={"url": receivers[0].url}).json()
        r = admin.post(f"/v1/webhooks/{failing['id']}/test")
        assert r.json() == {
            "delivery_id": r.json()["delivery_id"],
            "delivered": False,
            "status": 500,
            "error": "HTTP 500",
        }
        (d,) = admin.get(f"/v1/webhooks/{failing['id']}/deliveries", params={"limit": 1}).json()["deliveries"]
        assert (d["state"], d["last_status"]) == ("failed", 500)


def test_a_policy_s_notify_decides_which_webhooks_hear_of_an_action(
    live: LiveServer, receivers: list[Receiver]
) -> None:
    """refund notifies webhook A only, deploy nobody; send_email has no policy: every webhook."""
    a, b = receivers
    with live.client(admin=True) as admin:
        hook_a = admin.post("/v1/webhooks", json={"url": a.url}).json()["id"]
        hook_b = admin.post("/v1/webhooks", json={"url": b.url}).json()["id"]
        assert admin.put("/v1/approval-policies/refund", json={"notify": [hook_a]}).status_code == 200
        assert admin.put("/v1/approval-policies/deploy", json={"notify": []}).status_code == 200
    with live.client() as agent:
        for n, action in enumerate(("refund", "deploy", "send_email")):
            asked = {"run_id": RUN, "action": action, "arguments": {"n": n}, "idempotency_key": f"k{n}"}
            assert agent.post("/v1/approvals", json=asked).status_code == 201
    # the consumer follows the log in order: once send_email's request reached both, it is done
    wait_for(lambda: len(a.received) == 2 and len(b.received) == 1)
    assert sorted(d["approval"]["action"] for d in a.bodies()) == ["refund", "send_email"]
    assert [d["approval"]["action"] for d in b.bodies()] == ["send_email"]
    with live.client(admin=True) as admin:
        log_a = admin.get(f"/v1/webhooks/{hook_a}/deliveries").json()["deliveries"]
        log_b = admin.get(f"/v1/webhooks/{hook_b}/deliveries").json()["deliveries"]
    assert [d["event_type"] for d in log_a] == ["approval.requested"] * 2
    assert len(log_b) == 1 and log_a[0]["id"] > log_a[1]["id"]  # newest first
