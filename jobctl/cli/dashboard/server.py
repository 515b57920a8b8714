"""The dashboard's web server: `http.server.ThreadingHTTPServer`, one thread per request.

Access: every request needs the token printed with the URL. A page opened with `?token=...`
gets it as a cookie (HttpOnly, SameSite=Strict, named after the port) and is redirected to the
same address without it, so the token does not stay in the address bar or the history. Scripts
may send it as the `X-Jobctl-Token` header or `?token=` instead. Anything else: 403, with no data.

Control (`--allow-control` only): `POST /api/jobs/ID/{stop,start,kill,retry}` with the token in
the `X-Jobctl-Token` header (a cookie alone is not enough for a POST, so no other page can make
the browser send one). Without the flag every POST is 403. Other methods: 405.

Each request opens its own Service (and SQLite connection): a connection never crosses threads.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from jobctl.errors import JobctlError, NotFound, StateError, UsageError
from jobctl.home.paths import Paths

if TYPE_CHECKING:
    from jobctl.app.session import Service

T = TypeVar("T")

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
JOB_PATH = re.compile(r"^/api/jobs/(\d{1,18})(?:/(logs|stop|start|kill|retry))?$")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class Dashboard(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], paths: Paths, token: str, allow_control: bool):
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.paths = paths
        self.token = token
        self.allow_control = allow_control
        self.cookie = f"jobctl_token_{self.server_address[1]}"
        self.debug = os.environ.get("JOBCTL_DEBUG") not in (None, "", "0")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that leaves a page cuts its open requests short (a broken pipe): not worth a
        word. Anything else is one line on stderr (the traceback with JOBCTL_DEBUG=1)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        if self.debug:
            super().handle_error(request, client_address)
            return
        sys.stderr.write(f"dashboard: a request failed: {type(exc).__name__}: {exc}\n")


class Handler(BaseHTTPRequestHandler):
    server: Dashboard
    server_version = "jobctl-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # -- plumbing ------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.debug:  # the request line carries the token on a first load: quiet by default
            sys.stderr.write(f"dashboard: {format % args}\n")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", CSP)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, (json.dumps(doc, indent=2, default=str) + "\n").encode(), "application/json")

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _forbidden(self, why: str) -> None:
        self._send(HTTPStatus.FORBIDDEN, f"403 Forbidden: {why}\n".encode())

    def _authorised(self, query: dict[str, list[str]]) -> tuple[bool, str]:
        """(the request carries the token, how: header, query, cookie or none). A token in the
        header or the address must be right whatever else comes with it; the cookie counts only
        without them (a stale cookie of an earlier dashboard on this port never hides a new URL)."""
        expected = self.server.token.encode()
        given = [(v, how) for v, how in ((self.headers.get("X-Jobctl-Token"), "header"),) if v is not None]
        given += [(v, "query") for v in query.get("token", [])]
        if given:
            ok = all(hmac.compare_digest(v.encode(), expected) for v, _ in given)
            return ok, "query" if any(how == "query" for _, how in given) else "header"
        from http.cookies import CookieError, SimpleCookie

        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except CookieError:
            return False, "none"
        morsel = cookies.get(self.server.cookie)
        if morsel is None:
            return False, "none"
        return hmac.compare_digest(morsel.value.encode(), expected), "cookie"

    def _service(self) -> Service:
        from jobctl.app.session import Service

        return Service(self.server.paths)

    # -- methods -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _refuse_method(self) -> None:
        given, _ = self._authorised(parse_qs(urlsplit(self.path).query))
        if not given:
            self._forbidden("missing or wrong token")
        else:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"405 Method Not Allowed\n", headers={"Allow": "GET, HEAD, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        ok, how = self._authorised(query)
        if not ok:
            self._drain()
            self._forbidden("missing or wrong token" if how == "none" else "wrong token")
            return
        path = url.path
        if method == "POST":
            self._drain()
            self._post(path)
            return
        if how == "query" and not path.startswith("/api/"):
            # a first load: keep the token in a cookie, and take it out of the address bar
            rest = "&".join(f"{k}={v}" for k, vs in query.items() if k != "token" for v in vs)
            location = path + (f"?{rest}" if rest else "")
            cookie = f"{self.server.cookie}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
            self._send(HTTPStatus.SEE_OTHER, b"", headers={"Location": location, "Set-Cookie": cookie})
            return
        try:
            self._get(path, query)
        except JobctlError as exc:
            self._error(path, exc)
        except Exception as exc:  # noqa: BLE001 - one bad request never stops the server
            if self.server.debug:
                import traceback

                traceback.print_exc()
            self._error(path, JobctlError(f"{type(exc).__name__}: {exc}"), HTTPStatus.INTERNAL_SERVER_ERROR)

    def _drain(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= 1 << 16:
            self.rfile.read(int(length))
        elif length:
            self.close_connection = True

    def _error(self, path: str, exc: JobctlError, status: int | None = None) -> None:
        if status is None:
            status = (
                HTTPStatus.NOT_FOUND
                if isinstance(exc, NotFound)
                else HTTPStatus.BAD_REQUEST
                if isinstance(exc, UsageError)
                else HTTPStatus.CONFLICT
                if isinstance(exc, StateError)
                else HTTPStatus.INTERNAL_SERVER_ERROR
            )
        if path.startswith("/api/"):
            self._json(status, {"error": exc.message})
        else:
            from jobctl.cli.dashboard import pages

            self._page(status, "error", "Error", pages.not_found(exc.message))

    def _page(self, status: int, name: str, title: str, body: str, extra: dict[str, str] | None = None) -> None:
        from jobctl.app.session import current_user
        from jobctl.cli.dashboard import pages

        html = pages.page(
            name,
            title,
            body,
            token=self.server.token,
            allow_control=self.server.allow_control,
            user=current_user(),
            extra=extra,
        )
        self._html(status, html)

    # -- GET -----------------------------------------------------------------------------------
    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        from jobctl.cli.dashboard import api, pages

        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"")
        if path in ("/", "/jobs"):
            return self._page(HTTPStatus.OK, "jobs", "Jobs", pages.jobs_body())
        match = re.fullmatch(r"/job/(\d{1,18})", path)
        if match:
            job_id = int(match.group(1))
            service = self._service()
            try:
                if not service.select([str(job_id)], missing_ok=True):
                    raise NotFound(f"no job {job_id}")
            finally:
                _close(service)
            body = pages.job_body(job_id, self.server.allow_control)
            return self._page(HTTPStatus.OK, "job", f"Job {job_id}", body, {"job": str(job_id)})
        if path == "/timeline":
            from jobctl.cli.dashboard import timeline

            range_name = api._one(query, "range") or "day"
            if range_name not in timeline.RANGES:
                raise UsageError(f"range: expected one of {', '.join(timeline.RANGES)}, got {range_name[:30]!r}")
            tl = self._with_service(lambda s: timeline.build(s, range_name))
            body = pages.timeline_body(timeline.svg(tl), range_name, len(tl.lanes), len(tl.bars))
            return self._page(HTTPStatus.OK, "timeline", "Timeline", body)
        if path == "/usage":
            from jobctl.cli.dashboard import usage

            since = api._one(query, "since") or "7d"
            seconds = _since(since)
            doc = self._with_service(lambda s: usage.compute(s, seconds))
            return self._page(HTTPStatus.OK, "usage", "Usage", pages.usage_body(usage.html(doc), since))
        if path == "/api/jobs":
            return self._json(HTTPStatus.OK, self._with_service(lambda s: api.jobs(s, query)))
        if path == "/api/table":
            return self._json(HTTPStatus.OK, self._with_service(lambda s: api.table(s, query)))
        if path == "/api/timeline":
            from jobctl.cli.dashboard import timeline

            range_name = api._one(query, "range") or "day"
            if range_name not in timeline.RANGES:
                raise UsageError(f"range: expected one of {', '.join(timeline.RANGES)}, got {range_name[:30]!r}")
            return self._json(HTTPStatus.OK, self._with_service(lambda s: timeline.build(s, range_name).document()))
        if path == "/api/usage":
            from jobctl.cli.dashboard import usage

            seconds = _since(api._one(query, "since") or "7d")
            return self._json(HTTPStatus.OK, self._with_service(lambda s: usage.compute(s, seconds)))
        match = JOB_PATH.match(path)
        if match and match.group(2) in (None, "logs"):
            job_id = int(match.group(1))
            if match.group(2) == "logs":
                return self._json(HTTPStatus.OK, self._with_service(lambda s: api.log_chunk(s, job_id, query)))
            return self._json(HTTPStatus.OK, self._with_service(lambda s: api.job(s, job_id)))
        if match:  # a control verb
            return self._send(
                HTTPStatus.METHOD_NOT_ALLOWED, b"405 Method Not Allowed: POST it\n", headers={"Allow": "POST"}
            )
        raise NotFound(f"{path[:200]}: no such page")

    def _with_service(self, work: Callable[[Service], T]) -> T:
        service = self._service()
        try:
            return work(service)
        finally:
            _close(service)

    def _static(self, name: str) -> None:
        if name == "states.css":
            from jobctl.cli.dashboard.colours import stylesheet

            return self._send(HTTPStatus.OK, stylesheet().encode(), STATIC_TYPES[".css"])
        suffix = os.path.splitext(name)[1]
        if not re.fullmatch(r"[a-z0-9_-]+\.(css|js)", name):
            raise NotFound(f"/static/{name[:100]}: no such file")
        try:
            data = (resources.files("jobctl.cli.dashboard") / "static" / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"/static/{name}: no such file") from None
        self._send(HTTPStatus.OK, data, STATIC_TYPES[suffix])

    # -- POST ----------------------------------------------------------------------------------
    def _post(self, path: str) -> None:
        from jobctl.cli.dashboard import api

        if not self.server.allow_control:
            return self._forbidden("read-only dashboard (start it with --allow-control to stop, start, kill, retry)")
        header = self.headers.get("X-Jobctl-Token") or ""
        if not hmac.compare_digest(header.encode(), self.server.token.encode()):
            return self._forbidden("a POST needs the token in the X-Jobctl-Token header")
        match = JOB_PATH.match(path)
        if not match or match.group(2) not in api.VERBS:
            return self._send(
                HTTPStatus.METHOD_NOT_ALLOWED, b"405 Method Not Allowed\n", headers={"Allow": "GET, HEAD"}
            )
        job_id, verb = int(match.group(1)), match.group(2)
        try:
            ok, report = self._with_service(lambda s: api.control(s, job_id, verb))
        except JobctlError as exc:
            return self._error(path, exc)
        self._json(HTTPStatus.OK if ok else HTTPStatus.CONFLICT, report)


def _since(text: str) -> float:
    from jobctl.core.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"since: {exc}") from None
    if not 0 < seconds <= 400 * 86400:
        raise UsageError(f"since: expected a duration from 1s to 400d, got {text[:30]!r}")
    return seconds


def _close(service: Service) -> None:
    """Close the database connection of a request's service, if it opened one."""
    store = getattr(service, "_store", None)
    if store is not None:
        store.close()


def serve(
    paths: Paths,
    host: str,
    port: int,
    *,
    open_browser: bool = False,
    allow_control: bool = False,
    token: str | None = None,
) -> int:
    """Serve until Ctrl-C (or SIGTERM). Prints the URL with its token on stdout; returns the exit code."""
    import secrets
    import signal

    token = token or secrets.token_urlsafe(24)
    try:
        server = Dashboard((host, port), paths, token, allow_control)
    except OSError as exc:
        import errno

        taken = exc.errno in (errno.EADDRINUSE, errno.EACCES)  # else the address itself is wrong
        hint = "choose another with --port" if taken else "check --host: an address of this machine"
        raise JobctlError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    # Ctrl-C stops it even when the shell that started it ignored SIGINT (a background job of a script)
    previous_int = signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    try:  # from here on, Ctrl-C (or SIGTERM) at any moment stops it cleanly
        bound_port = server.server_address[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}/?token={token}"
        if not is_loopback(host):
            sys.stderr.write(
                f"warning: listening on {host}: the dashboard is reachable from the network by anyone who has "
                "the token; plain HTTP, so the token can be read on the way (prefer --host 127.0.0.1 and an "
                "SSH tunnel)\n"
            )
        mode = "control allowed (stop/start/kill/retry)" if allow_control else "read-only"
        sys.stderr.write(f"jobctl dashboard: {mode}; Ctrl-C stops it\n")
        sys.stdout.write(url + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        if open_browser:
            import threading
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        server.server_close()
    sys.stderr.write(f"jobctl dashboard stopped after {int(time.monotonic() - started)} s\n")
    return 0
