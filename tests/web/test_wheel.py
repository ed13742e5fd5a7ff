"""A wheel built from this tree carries the built dashboard, and installed into a clean virtual
environment (no Node, no checkout) ``controlroom serve`` serves it at ``/``: one ``pip install``,
one process.

Marked ``venv`` (slow, like tests/test_light_install.py: a build, a virtual environment and the
server's dependencies from the package index; ``make test`` runs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from web_support import ROOT, require_built

from conftest import free_port
from controlroom.server.dashboard import IMMUTABLE
from tests_support import wait_for


@pytest.mark.venv
def test_the_wheel_carries_the_dashboard_and_serves_it(tmp_path: Path) -> None:
    built = require_built()
    tree = tmp_path / "controlroom"  # a copy: building leaves nothing in the checkout
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(tree),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("controlroom-*.whl")
    shipped = {n.removeprefix("controlroom/web/") for n in zipfile.ZipFile(wheel).namelist() if "/web/" in n}
    exported = {str(p.relative_to(built)) for p in built.rglob("*") if p.is_file()}
    assert shipped == exported
    assert {"index.html", "login/index.html", "approvals/index.html", "approvals/view/index.html"} <= shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"controlroom[server] @ {wheel.as_uri()}",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROLROOM_", "PYTHONPATH"))}
    log = tmp_path / "serve.log"
    with (
        log.open("w") as output,
        subprocess.Popen(
            [str(venv / "bin" / "controlroom"), "serve", "--port", str(port)],
            env={**clean, "CONTROLROOM_HOME": str(tmp_path / "home")},
            cwd=tmp_path,  # not this checkout: its sources must not be importable
            stdout=output,
            stderr=subprocess.STDOUT,
        ) as server,
    ):
        try:
            serves_the_dashboard(f"http://127.0.0.1:{port}", server, log, built)
        finally:
            server.terminate()
            server.wait(30)


def serves_the_dashboard(url: str, server: subprocess.Popen[bytes], log: Path, built: Path) -> None:
    def up() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the server exited:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=60)
    page = httpx.get(f"{url}/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
    assert "make dashboard" not in page.text  # the real dashboard, not the page saying how
    assert page.text == (built / "index.html").read_text()
    script = re.search(r'src="(/_next/static/[^"]+\.js)"', page.text)
    assert script is not None, page.text[:500]
    asset = httpx.get(url + script.group(1))
    assert asset.status_code == 200 and asset.headers["cache-control"] == IMMUTABLE
    assert httpx.get(f"{url}/approvals/view/", params={"id": "0" * 32}).status_code == 200
