"""The `controlroom` command: the group, the helpers its commands share, and its subcommands
(``server``: serve, demo, worker, resend, migrate, rebuild; ``project``: keys, projects, prices,
budgets; ``people``: users, approvals; ``admin``: policies, webhooks). Server packages are
imported inside the commands, so the light install (the SDK and ``resend``) can run this module."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from controlroom.config import Settings
from controlroom.errors import ConfigError, ControlroomError

SERVER_EXTRA = "pip install 'controlroom[server]'"
"""How to install the server: ``pip install controlroom`` is the SDK and the client-side commands."""

_SERVER_PACKAGES = frozenset(
    [
        "alembic",
        "argon2",
        "fastapi",
        "genai_prices",
        "google",
        "opentelemetry",
        "psycopg",
        "pydantic",
        "sqlalchemy",
        "starlette",
        "uvicorn",
    ]
)


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A known error becomes a one-line message; a server command run without the server's
    dependencies says which extra to install."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ControlroomError) as e:
            raise click.ClickException(str(e)) from None
        except ModuleNotFoundError as e:
            if (e.name or "").partition(".")[0] not in _SERVER_PACKAGES:
                raise
            command = click.get_current_context().command_path
            raise click.ClickException(
                f"`{command}` needs the controlroom server, which is not installed here"
                f" (no module {e.name!r}): {SERVER_EXTRA}"
            ) from None

    return wrapper


def _store(db: str | None) -> Any:
    from controlroom.store.engine import Store

    settings = Settings.load(database_url=db)
    store = Store(settings.database_url)
    click.get_current_context().call_on_close(store.dispose)
    store.migrate()
    return store


db_option = click.option(
    "--db", envvar="CONTROLROOM_DATABASE_URL", help="Database URL (default: ~/.controlroom/controlroom.db)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="controlroom")
def main() -> None:
    """controlroom: runs, spans, cost, caps, approvals and evals for AI agents."""


def _new_key(store: Any, project_name: str, name: str = "default", scope: str = "agent") -> str:
    from controlroom.accounts import projects

    with store.write() as conn:
        project = projects.ensure_project(conn, name=project_name)
        return projects.create_key(conn, project=project, name=name, scope=scope).key


def _project(conn: Any, name: str) -> Any:
    from controlroom.accounts import projects

    p = projects.get_project(conn, name=name)
    if p is None:
        raise click.ClickException(f"no project named {name!r}")
    return p


# the subcommands register themselves on `main`
from controlroom.cli import admin, evals, people, project, server  # noqa: E402, F401
