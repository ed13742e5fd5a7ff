"""Every route declares the one permission it needs; agent keys never manage the project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

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


def _api_routes(app: FastAPI) -> list[APIRoute]:
    """The app's routes, those of included routers too (``app.routes`` holds the routers), but the
    Starlette routes FastAPI adds for the OpenAPI document and its UI."""
    routes = (c.original_route for c in iter_route_contexts(app.routes))
    return [r for r in routes if isinstance(r, APIRoute)]


def test_every_route_declares_one_permission(tmp_path: Path) -> None:
    app = create_app(Settings.load(env={}, database_url=f"sqlite:///{tmp_path / 'cr.db'}"), run_worker=False)
    missing, several = [], []
    routes = _api_routes(app)
    assert len(routes) > 20, "the app's routes were not found"
    for route in routes:
        found = _permissions(route.dependant)
        if not found:
            missing.append(f"{sorted(route.methods)} {route.path}")
        elif len(found) > 1:
            several.append(f"{sorted(route.methods)} {route.path}: {sorted(found)}")
    assert not missing, f"routes that declare no permission: {missing}"
    assert not several, f"routes that declare more than one permission: {several}"
    # a fast route checks the permission its documentation route declares
    declared = {(m, r.path): _permissions(r.dependant) for r in routes for m in r.methods}
    fast = [r for routes in FAST_ROUTES for r in routes.routes]
    assert {r.path: r.permission for r in fast} == {
        "/v1/budget/reservations": Permission.RESERVE,
        "/v1/budget/reservations/{reservation_id}/settle": Permission.RESERVE,
        "/v1/approvals": Permission.AGENT,
        "/v1/approvals/{approval_id}/claim": Permission.AGENT,
        "/v1/approvals/{approval_id}/outcome": Permission.AGENT,
    }
    for r in fast:
        assert declared[("POST", r.path)] == {r.permission}, r.path


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
