"""Users, roles and sessions in the store, on SQLite and PostgreSQL: Argon2id hashes, sessions as
rows that end on logout, idle and absolute expiry, password or role change and disable, and login
throttling whose counters live in the database."""

from __future__ import annotations

import time

import pytest

from controlroom.accounts import passwords, sessions
from controlroom.accounts import users as u
from controlroom.accounts.projects import Project, create_key, list_keys
from controlroom.errors import Conflict, TooManyRequests, Unauthorized, ValidationFailed
from controlroom.store.engine import Store

PASSWORD = "correct horse battery"
IDLE = 3600.0
MAX = 86_400.0

pytestmark = pytest.mark.usefixtures("cheap_hashes")


def new_user(store: Store, login: str = "Alice@Example.com") -> u.User:
    with store.write() as conn:
        return u.create_user(conn, login=login, password=PASSWORD, name="Alice")


def log_in(
    store: Store, login: str = "alice@example.com", password: str = PASSWORD, address: str = "10.0.0.1"
) -> sessions.NewSession:
    return sessions.login(store, login=login, password=password, address=address, max_seconds=MAX)


def test_passwords_are_argon2id_and_logins_case_insensitive(store: Store, project: Project) -> None:
    user = new_user(store)
    assert user.login == "alice@example.com"
    with store.read() as conn:
        stored = u.password_hash(conn, user_id=user.id)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with store.write() as conn, pytest.raises(Conflict):
        u.create_user(conn, login="ALICE@example.com", password=PASSWORD)
    with store.write() as conn, pytest.raises(ValidationFailed, match="at least 12 characters"):
        u.create_user(conn, login="bob", password="short")
    with store.write() as conn, pytest.raises(ValidationFailed, match="bad login"):
        u.create_user(conn, login="no spaces allowed", password=PASSWORD)


def test_the_default_hasher_is_rfc_9106_argon2id() -> None:
    passwords.use_hasher(None)
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify(stored, PASSWORD) and not passwords.verify(stored, PASSWORD + "!")


def test_roles_are_per_project_and_ordered(store: Store, project: Project) -> None:
    user = new_user(store)
    with store.write() as conn:
        u.set_role(conn, user=user, project=project, role=u.Role.approver)
        assert u.role_in(conn, user_id=user.id, project_id=project.id) == u.Role.approver
        assert [(m.user.login, m.role) for m in u.members(conn, project=project)] == [
            ("alice@example.com", u.Role.approver)
        ]
        u.set_role(conn, user=user, project=project, role=None)
        assert u.role_in(conn, user_id=user.id, project_id=project.id) is None
    assert u.Role.viewer < u.Role.approver < u.Role.admin
    with pytest.raises(ValidationFailed, match="unknown role 'owner'"):
        u.Role.parse("owner")


def test_a_session_is_a_row_the_cookie_names(store: Store, project: Project) -> None:
    user = new_user(store)
    with store.write() as conn:
        u.set_role(conn, user=user, project=project, role=u.Role.viewer)
    new = log_in(store, login="ALICE@example.com")
    assert len(new.token) >= 43  # 256 random bits
    found = sessions.session_for(store, new.token, idle_seconds=IDLE)
    assert found is not None and found.user.id == user.id and found.roles == {project.id: u.Role.viewer}
    assert sessions.session_for(store, new.token + "x", idle_seconds=IDLE) is None
    assert sessions.logout(store, new.token)
    assert sessions.session_for(store, new.token, idle_seconds=IDLE) is None


def test_sessions_expire_when_idle_and_at_their_absolute_end(store: Store) -> None:
    new_user(store)
    new = log_in(store)
    now = time.time_ns()
    assert sessions.session_for(store, new.token, idle_seconds=IDLE, now=now + int(IDLE * 1e9) - 10**9)
    # that request was noted: the idle clock restarted from it
    later = now + int(IDLE * 1e9) + 10**9
    assert sessions.session_for(store, new.token, idle_seconds=IDLE, now=later) is not None
    assert (
        sessions.session_for(store, new.token, idle_seconds=IDLE, now=later + int(IDLE * 1e9) + 10**9) is None
    )
    fresh = log_in(store)
    assert (
        sessions.session_for(store, fresh.token, idle_seconds=MAX * 2, now=now + int(MAX * 1e9) + 10**9)
        is None
    )


@pytest.mark.parametrize("change", ["password", "role", "disable"])
def test_sessions_end_on_password_role_change_and_disable(
    store: Store, project: Project, change: str
) -> None:
    user = new_user(store)
    new = log_in(store)
    with store.write() as conn:
        if change == "password":
            u.set_password(conn, user=user, password="another long password")
        elif change == "role":
            u.set_role(conn, user=user, project=project, role=u.Role.admin)
        else:
            u.set_disabled(conn, user=user, disabled=True)
    assert sessions.session_for(store, new.token, idle_seconds=IDLE) is None
    if change == "password":
        with pytest.raises(Unauthorized):
            log_in(store)
        assert log_in(store, password="another long password").session.user.id == user.id
    elif change == "disable":
        with pytest.raises(Unauthorized, match=sessions.WRONG):
            log_in(store)


def test_a_failed_login_does_not_say_whether_the_user_exists(store: Store) -> None:
    new_user(store)
    with pytest.raises(Unauthorized) as wrong_password:
        log_in(store, password="not the password")
    with pytest.raises(Unauthorized) as no_user:
        log_in(store, login="nobody@example.com")
    assert wrong_password.value.problem() == no_user.value.problem()


def test_logins_are_throttled_per_account_and_per_address(store: Store) -> None:
    new_user(store)
    for i in range(sessions.ACCOUNT_LIMIT):
        with pytest.raises(Unauthorized):
            log_in(store, password="wrong", address=f"10.1.0.{i}")
    with pytest.raises(TooManyRequests) as refused:
        log_in(store, address="10.9.9.9")  # even the right password, from elsewhere
    assert refused.value.status == 429 and 0 < refused.value.retry_after <= sessions.WINDOW_SECONDS
    # an address that failed against many accounts (existing or not) is refused for all of them
    for i in range(sessions.ADDRESS_LIMIT):
        with pytest.raises(Unauthorized):
            log_in(store, login=f"guess{i}", address="10.2.0.1")
    with pytest.raises(TooManyRequests, match="from this address"):
        log_in(store, login="someone-else", address="10.2.0.1")


def test_the_throttle_window_passes_and_a_success_clears_the_account_count(store: Store) -> None:
    new_user(store)
    for _ in range(sessions.ACCOUNT_LIMIT - 1):
        with pytest.raises(Unauthorized):
            log_in(store, password="wrong")
    log_in(store)  # a success clears the account's count ...
    for _ in range(sessions.ACCOUNT_LIMIT - 1):
        with pytest.raises(Unauthorized):
            log_in(store, password="wrong", address="10.3.0.1")
    assert log_in(store, address="10.3.0.1").session.user.login == "alice@example.com"


def test_existing_keys_are_agent_keys_and_admin_keys_are_asked_for(store: Store, project: Project) -> None:
    with store.write() as conn:
        create_key(conn, project=project)
        create_key(conn, project=project, name="ops", scope="admin")
        with pytest.raises(ValidationFailed, match="unknown key scope 'root'"):
            create_key(conn, project=project, scope="root")
        assert [(k["name"], k["scope"]) for k in list_keys(conn, project=project)] == [
            ("default", "agent"),
            ("ops", "admin"),
        ]
