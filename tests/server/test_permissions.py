"""Every route declares the one permission it needs; agent keys never manage the project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from conftest import LiveServer
from controlroom.config import Settings
from controlroom.server.app import FAST_ROUTES, create_app
from controlroom.server.auth import Permission, permission_of


def _permissions(dependant: Any) -> set[Permission]:
    found = set()
    for d in dependant.dependencies:
        p = permission_of(d.call)
        if p is not None:
            found.add(p)
        found |= _permissions(d)
    return found


def test_every_route_declares_one_permission(tmp_path: Path) -> None:
    app = create_app(Settings.load(env={}, database_url=f"sqlite:///{tmp_path / 'cr.db'}"), run_worker=False)
    missing, several = [], []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # the OpenAPI document and its UI: Starlette routes FastAPI adds
        found = _permissions(route.dependant)
        if not found:
            missing.append(f"{sorted(route.methods)} {route.path}")
        elif len(found) > 1:
            several.append(f"{sorted(route.methods)} {route.path}: {sorted(found)}")
    assert not missing, f"routes that declare no permission: {missing}"
    assert not several, f"routes that declare more than one permission: {several}"
    for fast in FAST_ROUTES:
        assert {r.permission for r in fast.routes} == {Permission.RESERVE}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/budgets", {"cap_usd": "1"}),
        ("DELETE", "/v1/budgets", None),
        ("POST", "/v1/prices", {"model": "m", "input_per_mtok": "1", "output_per_mtok": "1"}),
    ],
)
def test_an_agent_key_cannot_manage_the_project(live: LiveServer, method: str, path: str, body: Any) -> None:
    with live.client() as agent:
        r = agent.request(method, path, json=body)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "needs an admin" in r.json()["detail"]
    with live.client(admin=True) as admin:
        assert admin.request(method, path, json=body).status_code in (200, 201, 204, 404)
    with live.client() as agent:  # and reading is open to both
        assert agent.get("/v1/budgets").status_code == 200
