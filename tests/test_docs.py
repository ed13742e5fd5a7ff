"""The documentation stays true of the code: every setting, CLI command and option, route, error
code, client event type (with its body fields), public SDK name and SDK option is documented, and the
docs' links resolve.

When one of these fails, document the new thing in the file the message names."""

from __future__ import annotations

import ast
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import controlroom
from controlroom import errors, events
from controlroom.cli import main
from controlroom.config import SETTINGS, Settings
from controlroom.sdk import integrations
from controlroom.sdk._client import build_config
from controlroom.server import app as app_module
from controlroom.server.app import create_app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def read(name: str) -> str:
    path = ROOT / name
    assert path.is_file(), f"{name} is missing"
    return path.read_text(encoding="utf-8")


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_documented(setting: typing.Any) -> None:
    assert f"`{setting.env}`" in read("docs/configuration.md"), (
        f"{setting.env} (config.SETTINGS) is not documented in docs/configuration.md"
    )


# -- CLI ----------------------------------------------------------------------------------------


def walk(group: click.Group, prefix: str = "controlroom") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from walk(command, path)


CLI_COMMANDS = list(walk(main))


def test_the_cli_walk_finds_commands() -> None:
    assert len(CLI_COMMANDS) >= 10


@pytest.mark.parametrize(("path", "command"), CLI_COMMANDS, ids=[p for p, _ in CLI_COMMANDS])
def test_every_cli_command_and_option_is_documented(path: str, command: click.Command) -> None:
    doc = read("docs/cli.md")
    assert path in doc, f"`{path}` is not documented in docs/cli.md"
    if isinstance(command, click.Group):
        return
    section = _section(doc, path)
    for param in command.params:
        if isinstance(param, click.Option):
            flag = max(param.opts, key=len)  # the long form
            if flag == "--help":
                continue
            assert flag in section, (
                f"option {flag} of `{path}` is not documented in its section of docs/cli.md"
            )
        elif isinstance(param, click.Argument):
            assert (param.name or "").upper() in section, (
                f"argument {(param.name or '').upper()} of `{path}` is not documented in docs/cli.md"
            )


def _section(doc: str, path: str) -> str:
    """The text under the heading that names ``path`` (up to the next heading of any level)."""
    m = re.search(rf"^#+ {re.escape(path)}\s*$", doc, re.MULTILINE)
    assert m is not None, f"docs/cli.md has no heading `## {path}`"
    rest = doc[m.end() :]
    nxt = re.search(r"^#+ ", rest, re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


# -- HTTP API -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, typing.Any]:
    db = tmp_path_factory.mktemp("docs") / "x.db"
    app = create_app(Settings.load(env={}, database_url=f"sqlite:///{db}"), run_worker=False)
    try:
        return app.openapi()
    finally:
        app.state.store.dispose()


def test_every_route_is_documented(openapi: dict[str, typing.Any]) -> None:
    doc = read("docs/api.md")
    assert openapi["paths"], "the OpenAPI document has no paths"
    missing = [
        f"{method.upper()} {path}"
        for path, ops in openapi["paths"].items()
        for method in ops
        if f"{method.upper()} {path}" not in doc
    ]
    assert not missing, f"not documented in docs/api.md: {missing}"


def test_every_route_parameter_is_documented(openapi: dict[str, typing.Any]) -> None:
    doc = read("docs/api.md")
    missing = [
        f"{method.upper()} {path} ?{p['name']}"
        for path, ops in openapi["paths"].items()
        for method, op in ops.items()
        for p in op.get("parameters", [])
        if f"`{p['name']}`" not in doc
    ]
    assert not missing, f"parameters not documented in docs/api.md: {missing}"


def _error_classes() -> list[type[errors.ControlroomError]]:
    found, todo = [], [errors.ControlroomError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _handler_codes() -> set[str]:
    """The `code`s the app's exception handlers write themselves (server/app.py)."""
    tree = ast.parse(Path(app_module.__file__).read_text(encoding="utf-8"))
    codes: set[object] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = node.keys
            for k, v in zip(keys, node.values, strict=True):
                # {"code": "invalid_request", ...}
                if isinstance(k, ast.Constant) and k.value == "code" and isinstance(v, ast.Constant):
                    codes.add(v.value)
                # {404: "not_found", 405: "method_not_allowed"}
                if isinstance(k, ast.Constant) and isinstance(k.value, int) and isinstance(v, ast.Constant):
                    codes.add(v.value)
        # {...}.get(exc.status_code, "http_error")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Dict)
            and len(node.args) == 2
            and isinstance(node.args[1], ast.Constant)
        ):
            codes.add(node.args[1].value)
    return {c for c in codes if isinstance(c, str)}


def test_the_handler_codes_are_found() -> None:
    assert {"not_found", "method_not_allowed", "http_error"} <= _handler_codes()
    # a 500 is the base error's problem document (errors.internal_error)
    assert "internal_error" in {cls.code for cls in _error_classes()}


def test_every_error_code_is_documented() -> None:
    doc = read("docs/api.md")
    codes = {cls.code for cls in _error_classes()} | _handler_codes()
    missing = sorted(c for c in codes if f"`{c}`" not in doc)
    assert not missing, f"error codes not documented in docs/api.md: {missing}"


# -- events -------------------------------------------------------------------------------------


def _body_models() -> dict[str, type[typing.Any]]:
    union = typing.get_args(events.ClientEvent)[0]
    out = {}
    server = typing.get_args(typing.get_args(events.ServerEvent)[0])
    for model in (*typing.get_args(union), *server):
        (etype,) = typing.get_args(model.model_fields["type"].annotation)
        out[etype] = model.model_fields["body"].annotation
    return out


def test_the_body_models_cover_every_event_type() -> None:
    assert set(_body_models()) == set(events.CLIENT_EVENT_TYPES) | set(events.SERVER_EVENT_TYPES)
    assert _body_models() == events.BODIES


@pytest.mark.parametrize("etype", events.BODIES)
def test_every_event_type_and_body_field_is_documented(etype: str) -> None:
    doc = read("docs/events.md")
    assert f"`{etype}`" in doc, f"event type {etype} is not documented in docs/events.md"
    body = events.BODIES[etype]
    missing = [name for name in body.model_fields if f"`{name}`" not in doc]
    assert not missing, f"body fields of {etype} not documented in docs/events.md: {missing}"


@pytest.mark.parametrize("model", [events.Usage, events.ErrorInfo], ids=lambda m: m.__name__)
def test_nested_body_fields_are_documented(model: type[typing.Any]) -> None:
    doc = read("docs/events.md")
    missing = [name for name in model.model_fields if f"`{name}`" not in doc]
    assert not missing, f"fields of {model.__name__} not documented in docs/events.md: {missing}"


def test_every_span_kind_is_documented() -> None:
    doc = read("docs/events.md")
    missing = [k for k in events.SPAN_KINDS if f"`{k}`" not in doc]
    assert not missing, f"span kinds not documented in docs/events.md: {missing}"


def test_every_run_status_is_documented() -> None:
    doc = read("docs/concepts.md")
    missing = [s for s in events.RUN_STATUSES if f"`{s}`" not in doc]
    assert not missing, f"run statuses not documented in docs/concepts.md: {missing}"


# -- Python SDK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", controlroom.__all__)
def test_every_public_sdk_name_is_documented(name: str) -> None:
    """Named as `controlroom.NAME` (functions, exceptions) or `class NAME` (the span classes)."""
    pattern = rf"controlroom\.{re.escape(name)}\b|class {re.escape(name)}\b"
    assert re.search(pattern, read("docs/sdk.md")), (
        f"controlroom.{name} (controlroom.__all__) is not documented in docs/sdk.md"
    )


SDK_OPTIONS = list(inspect.signature(build_config).parameters)


def test_the_sdk_options_are_found() -> None:
    assert {"url", "api_key", "spool_dir", "budget"} <= set(SDK_OPTIONS)


@pytest.mark.parametrize("option", SDK_OPTIONS)
def test_every_sdk_option_is_documented(option: str) -> None:
    assert f"`{option}`" in read("docs/sdk.md"), (
        f"option {option} of controlroom.init() (sdk._client.build_config) is not documented in docs/sdk.md"
    )


def test_the_sdk_integrations_are_documented() -> None:
    doc = read("docs/sdk.md")
    missing = [name for name in integrations.__all__ if name not in doc]
    assert not missing, f"integrations not documented in docs/sdk.md: {missing}"


# -- README and links -----------------------------------------------------------------------------


def test_readme_starts_with_make_run_and_make_test() -> None:
    head = "\n".join(read("README.md").splitlines()[:15])
    assert "make run" in head and "make test" in head, "README.md must begin with `make run` and `make test`"
    assert head.index("make run") < head.index("make test")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", _without_code(text), re.MULTILINE)}


def _without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


DOC_FILES = ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))]


@pytest.mark.parametrize("name", DOC_FILES)
def test_links_between_docs_resolve(name: str) -> None:
    source = ROOT / name
    text = read(name)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code(text)):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (source.parent / file_part).resolve() if file_part else source
        bad_anchor = (
            path.exists()
            and bool(anchor)
            and path.suffix == ".md"
            and anchor not in _anchors(path.read_text(encoding="utf-8"))
        )
        if not path.exists() or bad_anchor:
            broken.append(target)
    assert not broken, f"broken links in {name}: {broken}"


def test_docs_exist() -> None:
    for name in ("concepts", "events", "api", "cli", "configuration", "sdk", "opentelemetry", "budgets"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"
