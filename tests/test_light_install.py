"""``pip install controlroom`` is the SDK and the client-side commands, nothing of the server: the
bare package, installed from this working tree into a clean virtual environment, traces an agent
into a running server, and the server's commands there say which extra to install.

The tests marked ``venv`` are slow (they create a virtual environment and install the package from the package
index, about half a minute). Run on SQLite only: what is installed does not depend on the server's
database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import LiveServer
from tests_support import wait_for

ROOT = Path(__file__).resolve().parents[1]
SERVER_DISTRIBUTIONS = (
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "psycopg",
    "protobuf",
    "alembic",
    "pydantic",
    "starlette",
)
SERVER_COMMANDS = (
    ("serve",),
    ("demo",),
    ("worker",),
    ("migrate",),
    ("rebuild",),
    ("keys", "create", "--project", "acme"),
    ("keys", "list", "--project", "acme"),
    ("keys", "revoke", "1"),
    ("projects", "create", "acme"),
    ("projects", "list"),
    ("projects", "set-timezone", "acme", "UTC"),
    ("prices", "set", "--project", "acme", "--model", "m", "--input", "1", "--output", "2"),
    ("prices", "list", "--project", "acme"),
    ("budgets", "set", "--project", "acme", "--cap-usd", "1"),
    ("budgets", "list", "--project", "acme"),
    ("budgets", "delete", "--project", "acme"),
)


@pytest.fixture(scope="session")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtual environment with the bare package (no extras) installed from this working
    tree (copied first, so the build leaves nothing in it); its bin directory."""
    base = tmp_path_factory.mktemp("light")
    tree = base / "controlroom"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(tree)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


def run_in(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROLROOM_", "PYTHONPATH"))}
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        cwd=bin_dir.parent,  # not this checkout: its sources must not be importable
    )


AGENT = textwrap.dedent(
    """
    import sys
    from importlib import metadata

    import controlroom
    from controlroom.sdk import integrations  # the provider integrations import nothing either

    assert controlroom.__file__.startswith(sys.prefix), controlroom.__file__  # the installed copy
    controlroom.init()
    with controlroom.run("light-agent", inputs={"q": "where is my order?"}):
        with controlroom.llm("acme", "acme-1", input="where is my order?", max_tokens=50) as call:
            call.record(output="shipped", input_tokens=12, output_tokens=3)
        with controlroom.tool("lookup_order"):
            pass
    assert controlroom.flush(30), "not delivered"

    from types import SimpleNamespace
    from controlroom.evals.evaluator import evaluate

    @controlroom.evaluator(name="shipped")
    def shipped(run):  # an evaluator, defined and run where only the SDK is installed
        return controlroom.Score(value=run.output == "shipped", comment="checked")
    assert evaluate(shipped, SimpleNamespace(output="shipped")).scores[0].passed

    absent = []
    for name in sys.argv[1:]:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    server = ("fastapi", "starlette", "sqlalchemy", "alembic", "psycopg", "uvicorn", "pydantic", "google")
    imported = sorted({m.split(".")[0] for m in sys.modules} & set(server))
    print(",".join(absent), ",".join(imported), sep="|")
    """
)


@pytest.mark.venv
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_bare_package_traces_an_agent_without_any_server_dependency(
    light_venv: Path, live: LiveServer, tmp_path: Path
) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    done = run_in(
        light_venv,
        "python",
        str(agent),
        *SERVER_DISTRIBUTIONS,
        CONTROLROOM_URL=live.url,
        CONTROLROOM_API_KEY=live.key,
        CONTROLROOM_HOME=str(tmp_path / "home"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    absent, imported = done.stdout.strip().splitlines()[-1].split("|")
    assert absent.split(",") == list(SERVER_DISTRIBUTIONS)  # none of them installed
    assert imported == ""
    with live.client() as http:
        runs = wait_for(lambda: http.get("/v1/runs", params={"agent": "light-agent"}).json()["runs"])
        (run,) = runs
        assert run["status"] == "succeeded"
        spans = wait_for(lambda: http.get(f"/v1/runs/{run['run_id']}").json().get("spans"))
    assert sorted(s["kind"] for s in spans) == ["llm", "tool"]


@pytest.mark.parametrize(
    "module", ["controlroom", "controlroom.sdk.integrations", "controlroom.cli", "controlroom.sdk._resend"]
)
def test_the_sdk_and_client_commands_import_nothing_of_the_server(module: str) -> None:
    """Where the server IS installed (this suite's environment), importing the SDK still loads
    none of it: the light install's premise, checked without building a venv."""
    code = (
        f"import sys, {module}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set(sys.argv[1:])))"
    )
    server = (
        *SERVER_DISTRIBUTIONS,
        "google",
        "opentelemetry",
        "genai_prices",
        "httpx",
        "openai",
        "anthropic",
    )
    done = subprocess.run([sys.executable, "-c", code, *server], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.venv
def test_the_server_commands_name_the_extra_to_install(light_venv: Path, tmp_path: Path) -> None:
    for command in SERVER_COMMANDS:
        done = run_in(light_venv, "controlroom", *command, CONTROLROOM_HOME=str(tmp_path))
        assert done.returncode != 0, command
        assert "pip install 'controlroom[server]'" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr, (command, done.stderr)
    assert run_in(light_venv, "controlroom", "resend", "--help").returncode == 0  # client-side
