"""`controlroom users`: the first admin comes from the CLI; roles, disable and password resets
end sessions; bad values are named."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from controlroom.accounts import sessions
from controlroom.cli import main
from controlroom.errors import Unauthorized
from controlroom.store.engine import Store

PASSWORD = "a long enough password"

pytestmark = pytest.mark.usefixtures("cheap_hashes")


def run(*args: str, stdin: str | None = None, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_users_lifecycle(db_url: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    out = run(
        "users",
        "create",
        "--db",
        db_url,
        "Ann",
        "--project",
        "shop",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert "created user 'ann', admin of project 'shop'" in out
    # the prompt asks twice
    run(
        "users",
        "create",
        "--db",
        db_url,
        "bob@example.com",
        "--project",
        "shop",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    listing = run("users", "list", "--db", db_url, "--project", "shop")
    assert "ann\tadmin\tactive" in listing and "bob@example.com\tviewer\tactive" in listing
    assert PASSWORD not in listing

    store = Store(db_url)
    session = sessions.login(store, login="ann", password=PASSWORD, address=None, max_seconds=60)
    run("users", "set-role", "--db", db_url, "ann", "--project", "shop", "--role", "approver")
    assert sessions.session_for(store, session.token, idle_seconds=60) is None
    assert "ann\tapprover" in run("users", "list", "--db", db_url, "--project", "shop")

    run("users", "reset-password", "--db", db_url, "ann", "--password-stdin", stdin="another good password\n")
    with pytest.raises(Unauthorized):
        sessions.login(store, login="ann", password=PASSWORD, address=None, max_seconds=60)
    run("users", "disable", "--db", db_url, "ann")
    assert "ann\tapprover\tdisabled" in run("users", "list", "--db", db_url, "--project", "shop")
    with pytest.raises(Unauthorized):
        sessions.login(store, login="ann", password="another good password", address=None, max_seconds=60)
    run("users", "disable", "--db", db_url, "ann", "--enable")
    assert sessions.login(store, login="ann", password="another good password", address=None, max_seconds=60)
    run("users", "set-role", "--db", db_url, "bob@example.com", "--project", "shop", "--role", "none")
    assert "bob@example.com" not in run("users", "list", "--db", db_url, "--project", "shop")
    store.dispose()


def test_bad_values_are_named(db_url: str) -> None:
    run("projects", "create", "--db", db_url, "shop")
    assert "at least 12 characters" in run(
        "users",
        "create",
        "--db",
        db_url,
        "ann",
        "--project",
        "shop",
        "--password-stdin",
        stdin="short\n",
        ok=False,
    )
    assert "no project named 'nope'" in run(
        "users",
        "create",
        "--db",
        db_url,
        "ann",
        "--project",
        "nope",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        ok=False,
    )
    assert "no user 'ghost'" in run("users", "disable", "--db", db_url, "ghost", ok=False)
    assert "'owner' is not one of" in run(
        "users", "set-role", "--db", db_url, "ghost", "--project", "shop", "--role", "owner", ok=False
    )
    run(
        "users",
        "create",
        "--db",
        db_url,
        "ann",
        "--project",
        "shop",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert "a user 'ann' already exists" in run(
        "users",
        "create",
        "--db",
        db_url,
        "ANN",
        "--project",
        "shop",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        ok=False,
    )
