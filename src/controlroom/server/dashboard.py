"""The dashboard: the static export of ``web/`` (Next.js), served at ``/`` by this same process.

Production stays one process and one ``pip install``: the wheel carries the built files in the
package directory ``controlroom/web/`` (``make dashboard`` copies ``web/out/`` there; git ignores
them), and no Node runs at run time. The API does not need them: without a build, ``/`` answers a
short page saying how to make one, and everything under ``/v1`` works the same.

What is served, and how:

- only ``GET`` and ``HEAD`` of paths outside the API (``/v1``, ``/docs``, ``/redoc``,
  ``/openapi.json``): an unknown ``/v1/...`` path is the API's JSON 404, never a page;
- a page is a directory with an ``index.html`` (Next's ``trailingSlash`` export): ``/approvals/``
  serves ``approvals/index.html`` and ``/approvals`` redirects there, keeping the query string
  (``/approvals/view/?id=…``: a static export has no dynamic segments, details take query strings);
- ``/_next/static/...`` files have content hashes in their names: cached for a year, immutable;
  everything else (pages, their RSC payloads) is ``no-cache``: revalidated each time (ETag), so a
  new build is seen at once;
- a path that is no file: the export's 404 page for a browser (it asks for ``text/html``), the
  API's JSON 404 for anything else;
- text files (scripts, styles, pages, RSC payloads) are compressed once, when the dashboard is
  built (``make dashboard`` leaves ``name.gz`` beside ``name``): a browser that accepts gzip gets
  those bytes (``Content-Encoding: gzip``, ``Vary: Accept-Encoding``), nothing is compressed per
  request.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Receive, Scope, Send

BUILT = Path(__file__).resolve().parent.parent / "web"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
API_PATHS = frozenset({"/v1", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
COMPRESSED = frozenset({".html", ".js", ".css", ".txt", ".json", ".svg", ".map"})
"""What ``make dashboard`` compresses (``gzip -k``): the text the export holds."""

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>controlroom</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem;
line-height:1.5;color:#1d2330}code{background:#f2f4f8;padding:.1rem .3rem;border-radius:4px}</style>
</head><body>
<h1>controlroom is running</h1>
<p>The API is up (<a href="/v1/health">/v1/health</a>, <a href="/docs">/docs</a>), but this
installation has no dashboard: it was installed from a source tree where the dashboard was not
built.</p>
<p>In a checkout of controlroom, <code>make run</code> builds it (with Node 20 or later:
<code>npm ci</code> and <code>npm run build</code> in <code>web/</code>, then the export is copied
into the package), or build it alone with <code>make dashboard</code> and restart the server. A wheel
built after that carries it.</p>
</body></html>
"""


def is_api(path: str) -> bool:
    return path in API_PATHS or path.startswith("/v1/")


class _Files(StaticFiles):
    """Starlette's file lookup (no path escapes the directory) and conditional responses (ETag,
    304), with this dashboard's cache policy."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        immutable = scope["path"].startswith("/_next/static/")
        response = self._gzipped(str(full_path), stat_result, scope, status_code)
        if response is None:
            response = super().file_response(full_path, stat_result, scope, status_code)
        if Path(full_path).suffix in COMPRESSED:
            response.headers["Vary"] = "Accept-Encoding"
        response.headers["Cache-Control"] = IMMUTABLE if immutable else REVALIDATE
        return response

    def _gzipped(
        self, full_path: str, stat_result: os.stat_result, scope: Scope, status_code: int
    ) -> Response | None:
        """The file's gzip twin, for a client that accepts gzip, when the build made one (and made
        it from this very file: a twin older than the file is left alone)."""
        if Path(full_path).suffix not in COMPRESSED:
            return None
        accepted = Headers(scope=scope).get("accept-encoding", "")
        if "gzip" not in {part.split(";")[0].strip() for part in accepted.split(",")}:
            return None
        try:
            twin = os.stat(full_path + ".gz")
        except OSError:
            return None
        if not stat.S_ISREG(twin.st_mode) or twin.st_mtime < stat_result.st_mtime:
            return None
        media_type = mimetypes.guess_type(full_path)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type in ("application/javascript", "image/svg+xml"):
            media_type += "; charset=utf-8"
        response = FileResponse(
            full_path + ".gz",
            status_code=status_code,
            media_type=media_type,
            stat_result=twin,
            headers={"Content-Encoding": "gzip"},
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


class Dashboard:
    """Answers the dashboard's paths; :meth:`serve` says whether it did (else the API answers)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or BUILT
        self.built = (self.directory / "index.html").is_file()
        self._files = _Files(directory=self.directory, check_dir=False)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> bool:
        if scope["method"] not in ("GET", "HEAD") or is_api(scope["path"]):
            return False
        response = self._response(scope)
        if response is None:
            return False
        await response(scope, receive, send)
        return True

    def _response(self, scope: Scope) -> Response | None:
        path: str = scope["path"]
        if not self.built:
            if path == "/":
                return HTMLResponse(NOT_BUILT, headers={"Cache-Control": REVALIDATE})
            return None
        try:
            relative = self._files.get_path(scope)
            found, st = self._files.lookup_path(relative)
            if st is not None and stat.S_ISDIR(st.st_mode):
                index, st = self._files.lookup_path(os.path.join(relative, "index.html"))
                if st is None or not stat.S_ISREG(st.st_mode):
                    return self._missing(scope)
                if not path.endswith("/"):  # a location without the host: right behind a proxy too
                    query = scope.get("query_string", b"").decode("latin-1")
                    return RedirectResponse(path + "/" + (f"?{query}" if query else ""), status_code=308)
                return self._files.file_response(index, st, scope)
            if st is not None and stat.S_ISREG(st.st_mode):
                return self._files.file_response(found, st, scope)
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            pass
        return self._missing(scope)

    def _missing(self, scope: Scope) -> Response | None:
        if "text/html" not in Headers(scope=scope).get("accept", ""):
            return None
        page, st = self._files.lookup_path("404.html")
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        return FileResponse(page, status_code=404, stat_result=st, headers={"Cache-Control": REVALIDATE})
