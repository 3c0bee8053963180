"""The HTTP side of a server (``eskernel serve --http HOST:PORT``): Prometheus ``/metrics``,
``/healthz``, ``/readyz``, a JSON REST API for task operations described by
``/openapi.json``, and the web dashboard under ``/ui/`` (:mod:`.dashboard`).

Invariants: it runs on the server's loop and calls the kernel like a wire request does
(same validation, same roles: ``Authorization: Bearer TOKEN``); a request line or headers
over 16 KiB or a body over 1 MiB closes the connection with 413; connections beyond the
server's ``max_connections`` get 503; a connection silent for 60 s is closed; metrics are computed from
the kernel's views and the server's counters when scraped, never on the request path.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .. import errors, events
from ..errors import InvalidSpecError, NotFoundError
from .auth import check
from .dashboard import Dashboard
from .ops import spec_kwargs, stats_wire, view_wire

__all__ = ["start_http", "openapi", "Metrics"]

MAX_HEAD = 16 << 10
MAX_BODY = 1 << 20
_STATUS = {200: "OK", 201: "Created", 303: "See Other", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           413: "Payload Too Large", 503: "Service Unavailable", 500: "Internal Server Error"}


def _code(err: BaseException) -> int:
    if isinstance(err, errors.AuthenticationError):
        return 401
    if isinstance(err, errors.PermissionDeniedError):
        return 403
    if isinstance(err, NotFoundError):
        return 404
    if isinstance(err, (errors.ServerBusyError, errors.KernelFailedError)):
        return 503
    if isinstance(err, errors.InvalidArgumentError):
        return 400
    if isinstance(err, errors.ConflictError):
        return 409
    return 500


class Metrics:
    """Prometheus metrics of one server (a registry of its own)."""

    def __init__(self, server: Any) -> None:
        from prometheus_client import CollectorRegistry, Histogram
        self.server = server
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_seconds = Histogram(
            "eskernel_request_seconds", "Server time per request, by operation", ["op"],
            registry=self.registry,
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1, 1.0))
        self.sync_seconds = Histogram(
            "eskernel_sync_seconds", "fdatasync of the log (fsync mode)",
            registry=self.registry,
            buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05, 0.25, 1.0))
        self.registry.register(self)

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        srv, k = self.server, self.server.kernel
        c = CounterMetricFamily("eskernel_requests", "Requests served, by operation",
                                labels=["op"])
        for op, n in sorted(srv.counters.items()):
            if op in srv.OP_NAMES:
                c.add_metric([op], n)
        yield c
        for name, key, doc in (("eskernel_leases_expired", "expired", "Leases expired"),
                               ("eskernel_stale_rejected", "stale", "Stale lease reports "
                                                                     "rejected"),
                               ("eskernel_tasks_claimed", "claimed", "Tasks claimed"),
                               ("eskernel_tasks_completed", "completed",
                                "Tasks completed through the service")):
            yield CounterMetricFamily(name, doc, value=srv.counters.get(key, 0))
        if k._failed is not None or k._closed:
            return
        st = k.stats()
        g = GaugeMetricFamily("eskernel_tasks", "Tasks by queue and status",
                              labels=["queue", "status"])
        paused = GaugeMetricFamily("eskernel_queue_paused", "1 when the queue is paused",
                                   labels=["queue"])
        for q in st.queues:
            for status, n in q.counts.items():
                g.add_metric([q.name, status], n)
            paused.add_metric([q.name], int(q.paused))
        yield g
        yield paused
        p = GaugeMetricFamily("eskernel_tasks_by_priority", "Tasks by priority and status",
                              labels=["priority", "status"])
        for prio, counts in st.by_priority.items():
            for status, n in counts.items():
                p.add_metric([str(prio), status], n)
        yield p
        a = GaugeMetricFamily("eskernel_agent_leases", "Live leases per agent",
                              labels=["agent"])
        for ag in st.agents:
            a.add_metric([ag.id], ag.active)
        yield a
        yield GaugeMetricFamily("eskernel_sessions", "Connected sessions",
                                value=sum(1 for c in srv.conns if c.session is not None))
        yield GaugeMetricFamily("eskernel_parked_requests", "Parked claims and waits",
                                value=len(srv.parked) + len(srv.waits))
        yield GaugeMetricFamily("eskernel_log_events", "Events in the log",
                                value=k.next_offset)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _task_schema() -> dict[str, Any]:
    from ..models import TaskSpec, TaskView
    return {"TaskSpec": TaskSpec.model_json_schema(), "TaskView": TaskView.model_json_schema()}


def _op(summary: str, op: str, body: str | None = None, ok: str = "200") -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "operationId": op,
                           "responses": {ok: {"description": "success"},
                                         "4XX": {"description": "a typed error: {type, message}"}}}
    if body:
        out["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return out


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the REST API."""
    tid = [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    qn = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "eskernel", "version": "1",
                 "description": "Task operations of an eskernel server. Errors are JSON "
                                "{type, message} with the class name of eskernel's error "
                                "hierarchy. Authenticate with 'Authorization: Bearer TOKEN' "
                                "when the server has a token file."},
        "paths": {
            "/v1/tasks": {"post": _op("Submit a task", "submit", "TaskSpec", "201"),
                          "get": {**_op("List tasks", "tasks"), "parameters": [
                              {"name": n, "in": "query", "schema": {"type": t}}
                              for n, t in (("status", "string"), ("queue", "string"),
                                           ("agent", "string"), ("limit", "integer"))]}},
            "/v1/tasks/{task_id}": {"get": {**_op("Get a task", "task"), "parameters": tid}},
            "/v1/tasks/{task_id}/cancel": {"post": {**_op("Cancel a task and its dependents",
                                                          "cancel"), "parameters": tid}},
            "/v1/tasks/{task_id}/requeue": {"post": {**_op("Requeue a FAILED task",
                                                           "requeue"), "parameters": tid}},
            "/v1/queues/{name}/pause": {"post": {**_op("Pause a queue", "pause_queue"),
                                                 "parameters": qn}},
            "/v1/queues/{name}/resume": {"post": {**_op("Resume a queue", "resume_queue"),
                                                  "parameters": qn}},
            "/v1/stats": {"get": _op("Counts, queues and agents", "stats")},
            "/metrics": {"get": _op("Prometheus metrics", "metrics")},
            "/healthz": {"get": _op("The process is up", "healthz")},
            "/readyz": {"get": _op("The kernel accepts requests", "readyz")},
        },
        "components": {"schemas": _task_schema()},
    }


class Http:
    """The HTTP handlers of one server."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.open = 0       # HTTP connections open (at most max_connections are served)
        try:
            self.metrics: Metrics | None = Metrics(server)
        except ImportError:         # prometheus-client is an optional dependency
            self.metrics = None
        server.metrics = self.metrics
        self.dashboard = Dashboard(server, _code)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            if self.open > self.server.config.max_connections:
                await self._reply(writer, 503, {"type": "ServerBusyError", "message":
                                                "too many HTTP connections; retry later",
                                                "retry_after": 1.0}, True)
                return
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self._reply(writer, 413, {"type": "ProtocolError",
                                                    "message": "headers over 16 KiB"}, True)
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        name, _, value = ln.partition(":")
                        headers[name.strip().lower()] = value.strip()
                if len(parts) != 3:
                    await self._reply(writer, 400, {"type": "ProtocolError",
                                                    "message": "bad request line"}, True)
                    return
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    await self._reply(writer, 413, {"type": "ProtocolError", "message":
                                                    f"body must be 0 to {MAX_BODY} bytes"}, True)
                    return
                body = await reader.readexactly(length) if length else b""
                close = headers.get("connection", "").lower() == "close"
                reply: Any
                extra: list[tuple[str, str]] = []
                try:
                    url = urlsplit(parts[1])
                    path = [unquote(p) for p in url.path.split("/") if p]
                    if path[:1] == ["ui"]:
                        status, reply, ctype, extra = self.dashboard.route(
                            parts[0], path, url.query, headers, body)
                    else:
                        status, reply, ctype = self.route(parts[0], parts[1], headers, body)
                    if not isinstance(reply, bytes):
                        reply = events.dumps(reply)
                except Exception as err:    # a bug: answered, never a dropped connection
                    status, ctype = 500, "application/json"
                    reply = {"type": "KernelInternalError", "message": f"{type(err).__name__}: "
                             f"{err}; this is a bug in eskernel, please report it"}
                await self._reply(writer, status, reply, close, ctype, extra)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open -= 1
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, status: int, value: Any,
                     close: bool, ctype: str = "application/json",
                     extra: list[tuple[str, str]] | None = None) -> None:
        body = value if isinstance(value, bytes) else events.dumps(value)
        more = "".join(f"{name}: {v}\r\n" for name, v in extra or ())
        writer.write(f"HTTP/1.1 {status} {_STATUS.get(status, 'Error')}\r\nContent-Type: "
                     f"{ctype}\r\nContent-Length: {len(body)}\r\n{more}"
                     f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
                     .encode() + body)
        await writer.drain()

    def route(self, method: str, target: str, headers: dict[str, str],
              body: bytes) -> tuple[int, Any, str]:
        url = urlsplit(target)
        path = [unquote(p) for p in url.path.split("/") if p]
        srv, k = self.server, self.server.kernel
        if path == ["healthz"]:
            return 200, {"status": "ok"}, "application/json"
        if path == ["readyz"]:
            ready = k._failed is None and not k._closed and not srv.draining
            return (200 if ready else 503), {"ready": ready}, "application/json"
        if path == ["metrics"]:
            if self.metrics is None:
                return 503, {"type": "ServiceError", "message": "install prometheus-client "
                             "(pip install eskernel[service]) for /metrics"}, "application/json"
            data, ctype = self.metrics.render()
            return 200, data, ctype
        if path == ["openapi.json"]:
            return 200, openapi(), "application/json"
        try:
            op, call = self._api(method, path, parse_qs(url.query), body)
            auth = headers.get("authorization", "")
            token = auth[7:] if auth[:7].lower() == "bearer " else None
            ident = srv.tokens.identify(token)
            if ident is None:
                raise errors.AuthenticationError("send 'Authorization: Bearer TOKEN' with a "
                                                 "token of the server's token file")
            check(ident, op)
            if op not in ("task", "tasks", "stats") and srv.draining:
                raise errors.ServerBusyError("the server is shutting down", retry_after=1.0)
            t0 = time.perf_counter()
            value = call()
            if op not in ("task", "tasks", "stats"):
                srv.changed = srv.dirty = True
                srv.schedule_flush()
            if self.metrics is not None:
                self.metrics.request_seconds.labels(op).observe(time.perf_counter() - t0)
            return (201 if op == "submit" else 200), value, "application/json"
        except errors.EskernelError as err:
            return _code(err), {"type": type(err).__name__, "message": str(err)}, \
                "application/json"

    def _api(self, method: str, path: list[str], query: dict[str, list[str]],
             body: bytes) -> tuple[str, Any]:
        k = self.server.kernel

        def one(name: str) -> str | None:
            v = query.get(name)
            return v[-1] if v else None

        if path == ["v1", "tasks"] and method == "POST":
            try:
                spec = events.loads(body)
            except Exception:
                raise InvalidSpecError("the body must be a JSON TaskSpec object") from None
            queue, payload, kw = spec_kwargs(spec)
            return "submit", lambda: {"id": k.submit(queue, payload, **kw)}
        if path == ["v1", "tasks"] and method == "GET":
            limit = one("limit")
            if limit is not None and not limit.isdigit():
                raise InvalidSpecError(f"limit must be a non-negative integer, got {limit!r}")
            return "tasks", lambda: [view_wire(v) for v in k.tasks(
                status=one("status"), queue=one("queue"), agent=one("agent"),
                limit=int(limit) if limit is not None else None)]
        if len(path) == 3 and path[:2] == ["v1", "tasks"] and method == "GET":
            return "task", lambda: view_wire(k.task(path[2]))
        if len(path) == 4 and path[:2] == ["v1", "tasks"] and method == "POST":
            if path[3] == "cancel":
                return "cancel", lambda: {"cancelled": k.cancel(path[2])}
            if path[3] == "requeue":
                return "requeue", lambda: (k.requeue(path[2]), {"requeued": path[2]})[1]
        if len(path) == 4 and path[:2] == ["v1", "queues"] and method == "POST":
            if path[3] == "pause":
                return "pause_queue", lambda: (k.pause_queue(path[2]), {"paused": True})[1]
            if path[3] == "resume":
                return "resume_queue", lambda: (k.resume_queue(path[2]), {"paused": False})[1]
        if path == ["v1", "stats"] and method == "GET":
            def stats() -> dict[str, Any]:
                out = stats_wire(k.stats())
                out["by_priority"] = {str(p): c for p, c in out["by_priority"].items()}
                return out       # JSON object keys are strings
            return "stats", stats
        raise NotFoundError(f"no route {method} /{'/'.join(path)}; see /openapi.json")


async def start_http(server: Any, host: str, port: int) -> asyncio.AbstractServer:
    """Serve the HTTP side of ``server`` on ``host:port``."""
    http = Http(server)
    srv = await asyncio.start_server(http.handle, host, port, limit=MAX_HEAD)
    server.http_addresses = [s.getsockname()[:2] for s in srv.sockets]
    return srv
