"""The web dashboard of a server (``/ui/`` on the ``--http`` listener): an overview with live
counts, the queues with pause / resume, a paginated task list, a task page with its history,
and the dead letters with requeue.

Pages are HTML built here with :func:`html.escape` on every value that comes from the kernel
(payloads, results, errors, names, ids); the stylesheet and script are files of the package
(``assets/``), served from the same listener, so the dashboard needs no network.

Invariants:

* reads need a token of any role (``Authorization: Bearer`` or the cookie ``/ui/login``
  sets); without one they are served only when the HTTP listener is bound to loopback;
* a state change is a ``POST /ui/api/...`` that carries the header ``X-Eskernel-Csrf: 1``
  (a cross-site form cannot send it), an ``Origin``, when sent, naming this listener, and an
  admin identity; anything else is refused before the kernel is called;
* every list is cut on the server: a page renders at most ``PAGE`` task views;
* responses carry a ``Content-Security-Policy`` allowing scripts and styles only from this
  origin, so markup that slipped into a page could not run.
"""

from __future__ import annotations

import html
import ipaddress
import time
from importlib import resources
from string import Template
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlencode

from .. import errors, events
from .._codes import STATUSES
from ..errors import InvalidSpecError, NotFoundError
from .auth import Identity

__all__ = ["Dashboard", "PAGE", "CSRF_HEADER", "COOKIE"]

PAGE = 50                     # task rows per page
BATCH = 1000                  # dead letters one "requeue all" click requeues at most
HISTORY = 500                 # timeline entries shown on a task page (the latest)
SHOWN = 64 << 10              # payload / result characters shown on a task page
CSRF_HEADER = "x-eskernel-csrf"
COOKIE = "eskernel_token"
ASSETS = {"dashboard.css": "text/css; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8", "favicon.svg": "image/svg+xml"}
HEADERS = [("Content-Security-Policy", "default-src 'none'; script-src 'self'; "
            "style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"),
           ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"),
           ("Cache-Control", "no-store")]
HTML = "text/html; charset=utf-8"
JSON = "application/json"
NAV = (("/ui/", "Overview"), ("/ui/queues", "Queues"), ("/ui/tasks", "Tasks"),
       ("/ui/dead", "Dead letters"))

#: (status, body, content type, extra headers)
Reply = tuple[int, Any, str, list[tuple[str, str]]]


def e(value: object) -> str:
    """``value`` as escaped HTML text (quotes included: safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + \
        f".{int(t * 1000) % 1000:03d}Z"


def _text(value: Any) -> str:
    """A payload or result as JSON text, cut at ``SHOWN`` characters."""
    try:
        s = events.dumps(value).decode("utf-8", "replace")
    except Exception:        # a value the codec refuses is shown by its repr
        s = repr(value)
    return s if len(s) <= SHOWN else s[:SHOWN] + f"... ({len(s) - SHOWN} more characters)"


def _template(name: str) -> Template:
    return Template((resources.files(__package__) / "assets" / name).read_text("utf-8"))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_host(headers: dict[str, str]) -> bool:
    """Whether the ``Host`` header names this machine by a loopback address or
    ``localhost`` (a page of another site that rebinds its name to 127.0.0.1 does not)."""
    host = headers.get("host", "")
    if host.startswith("["):                       # [::1]:8080
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    return name == "localhost" or _loopback(name)


def _cookie(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return unquote(value)
    return None


class Dashboard:
    """The ``/ui`` routes of one server."""

    def __init__(self, server: Any, code_of: Callable[[BaseException], int]) -> None:
        self.server = server
        self.code_of = code_of
        self.layout = _template("layout.html")

    # -- access ------------------------------------------------------------------------

    def _on_loopback(self) -> bool:
        addrs = getattr(self.server, "http_addresses", [])
        return bool(addrs) and all(_loopback(str(a[0])) for a in addrs)

    def _identity(self, headers: dict[str, str]) -> tuple[Identity | None, bool]:
        """Who asks (None when no token was accepted), and whether a token was sent.

        A request without a token to a loopback listener must name a loopback ``Host``:
        otherwise a page of another site whose name was rebound to 127.0.0.1 could use
        the access loopback grants.
        """
        auth = headers.get("authorization", "")
        token = auth[7:] if auth[:7].lower() == "bearer " else _cookie(headers)
        if token is None and self._on_loopback() and not _local_host(headers):
            raise errors.PermissionDeniedError(
                f"host {headers.get('host', '')[:80]!r} is not a loopback address; open the "
                "dashboard at http://127.0.0.1:PORT/ui/ or send a token")
        tokens = self.server.tokens
        if token is None and tokens.required:
            return None, False
        return tokens.identify(token), token is not None

    def _may_read(self, headers: dict[str, str]) -> None:
        ident, sent = self._identity(headers)
        if ident is not None:
            return
        if sent:
            raise errors.AuthenticationError("the token is not one of the server's; log in "
                                             "again at /ui/login")
        if not self._on_loopback():
            raise errors.AuthenticationError("this server is not on loopback: log in at "
                                             "/ui/login with a token of its token file")

    def _same_origin(self, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != headers.get("host"):
            raise errors.PermissionDeniedError(f"origin {origin[:80]!r} is not this server's; "
                                               "refused")

    def _may_change(self, headers: dict[str, str]) -> None:
        if headers.get(CSRF_HEADER) != "1":
            raise errors.PermissionDeniedError(
                f"a dashboard action must carry the header '{CSRF_HEADER}: 1' (the "
                "dashboard's buttons send it); refused")
        self._same_origin(headers)
        ident, _ = self._identity(headers)
        if ident is None:
            raise errors.AuthenticationError("actions need the admin token: log in at "
                                             "/ui/login")
        if ident.role != "admin":
            raise errors.PermissionDeniedError(f"a {ident.role} token may not change state "
                                               "from the dashboard; log in with an admin token")

    # -- routing -----------------------------------------------------------------------

    def route(self, method: str, path: list[str], query: str, headers: dict[str, str],
              body: bytes) -> Reply:
        """Answer ``method /ui/<path>``; errors become an HTML page (or JSON under ``api``)."""
        api = path[1:2] == ["api"]
        try:
            if path[1:2] == ["assets"] and len(path) == 3 and method == "GET":
                return self._asset(path[2])
            if path[1:] == ["login"]:
                return self._login(method, headers, body)
            if api and method == "POST":
                self._may_change(headers)
                return 200, self._action(path[2:]), JSON, HEADERS
            if method != "GET":
                raise NotFoundError(f"no route {method} /{'/'.join(path)}")
            self._may_read(headers)
            q = {k: v[-1] for k, v in parse_qs(query).items()}
            if api:
                if path[2:] == ["overview"]:
                    return 200, self.overview_data(), JSON, HEADERS
                raise NotFoundError(f"no route GET /{'/'.join(path)}")
            return 200, self._page(path[1:], q).encode(), HTML, HEADERS
        except errors.EskernelError as err:
            code = self.code_of(err)
            if api:
                return code, {"type": type(err).__name__, "message": str(err)}, JSON, HEADERS
            body_ = (f'<h1>{e(type(err).__name__)}</h1><p class="error">{e(err)}</p>'
                     '<p><a href="/ui/login">Log in</a> · <a href="/ui/">Overview</a></p>')
            return code, self._wrap("Error", body_).encode(), HTML, HEADERS

    def _asset(self, name: str) -> Reply:
        if name not in ASSETS:
            raise NotFoundError(f"no asset {name!r}")
        data = (resources.files(__package__) / "assets" / name).read_bytes()
        return 200, data, ASSETS[name], HEADERS[1:]

    def _login(self, method: str, headers: dict[str, str], body: bytes) -> Reply:
        if method == "POST":
            self._same_origin(headers)
            token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[-1]
            if self.server.tokens.identify(token) is None:
                raise errors.AuthenticationError("that token is not one of the server's")
            cookie = f"{COOKIE}={quote(token, safe='')}; Path=/ui; HttpOnly; SameSite=Strict"
            return 303, b"", HTML, [*HEADERS, ("Location", "/ui/"), ("Set-Cookie", cookie)]
        if method != "GET":
            raise NotFoundError(f"no route {method} /ui/login")
        form = ('<h1>Log in</h1><form method="post" action="/ui/login">'
                '<label>Token <input type="password" name="token" id="token" '
                'autocomplete="off"></label> <button type="submit" id="login">Log in</button>'
                '</form><p>The token is kept in an HttpOnly cookie for /ui.</p>')
        return 200, self._wrap("Log in", form).encode(), HTML, HEADERS

    def _action(self, path: list[str]) -> dict[str, Any]:
        srv, k = self.server, self.server.kernel
        if srv.draining:
            raise errors.ServerBusyError("the server is shutting down", retry_after=1.0)
        if len(path) == 3 and path[0] == "queues" and path[2] in ("pause", "resume"):
            (k.pause_queue if path[2] == "pause" else k.resume_queue)(path[1])
            out: dict[str, Any] = {"queue": path[1], "paused": path[2] == "pause"}
        elif len(path) == 3 and path[0] == "tasks" and path[2] == "cancel":
            out = {"cancelled": k.cancel(path[1])}
        elif len(path) == 3 and path[0] == "tasks" and path[2] == "requeue":
            k.requeue(path[1])
            out = {"requeued": path[1]}
        elif path == ["dead", "requeue"]:
            # FAILED tasks, oldest first, at most BATCH a request: the loop serves the other
            # clients between clicks.
            failed = k._sched.handles(STATUSES.index("FAILED"), -1, -1)
            for h in failed[:BATCH]:
                k.requeue(k._sched.task_ids[h])
            out = {"requeued": min(len(failed), BATCH),
                   "remaining": max(0, len(failed) - BATCH)}
        else:
            raise NotFoundError(f"no action /ui/api/{'/'.join(path)}")
        srv.changed = srv.dirty = True
        srv.schedule_flush()
        return out

    def _page(self, path: list[str], q: dict[str, str]) -> str:
        if path == []:
            return self.page_overview()
        if path == ["queues"]:
            return self.page_queues()
        if path == ["tasks"] and q.get("id"):
            return self.page_task(q["id"])
        if path == ["tasks"]:
            return self.page_tasks(q.get("status") or None, q.get("queue") or None,
                                   q.get("page", "1"), "/ui/tasks", "Tasks")
        if len(path) == 2 and path[0] == "tasks":
            return self.page_task(path[1])
        if path == ["dead"]:
            return self.page_tasks("FAILED", q.get("queue") or None, q.get("page", "1"),
                                   "/ui/dead", "Dead letters")
        raise NotFoundError(f"no page /ui/{'/'.join(path)}")

    def _wrap(self, title: str, body: str) -> str:
        nav = "".join(f'<a href="{href}">{name}</a>' for href, name in NAV)
        return self.layout.substitute(title=e(title), nav=nav, body=body)

    # -- data --------------------------------------------------------------------------

    def overview_data(self) -> dict[str, Any]:
        """Counts by status, queues and agents (the overview's live numbers): one
        ``stats()`` call, O(tasks) in C, plus O(queues + agents + leases)."""
        st = self.server.kernel.stats()
        return {
            "counts": dict(st.counts), "tasks": st.tasks, "events": st.events,
            "by_priority": {str(p): dict(c) for p, c in st.by_priority.items()},
            "queues": {qs.name: {"paused": qs.paused, "max_concurrent": qs.max_concurrent,
                                 "running": qs.running, "ready": qs.ready,
                                 "total": sum(qs.counts.values())} for qs in st.queues},
            "agents": {a.id: {"capacity": a.capacity, "active": a.active, "online": a.online,
                              "capabilities": list(a.capabilities),
                              "leases": [[x["task_id"], x["expires_at"]] for x in a.leases]}
                       for a in st.agents},
            "sessions": sum(1 for c in self.server.conns if c.session is not None),
        }

    def task_page(self, status: str | None, queue: str | None, page: int
                  ) -> tuple[list[Any], int]:
        """The views of one page of tasks in submission order, and how many match.

        ``Kernel.tasks`` takes a limit but no offset, so this cuts the scheduler's handle
        list (one pass in C yielding ints) and builds views only for the page's rows.
        """
        k = self.server.kernel
        code = -1
        if status is not None:
            if status not in STATUSES:
                raise InvalidSpecError(f"status {status!r:.40} is not one of {list(STATUSES)}")
            code = STATUSES.index(status)
        qi = k._queue(queue) if queue is not None else -1
        hs = k._sched.handles(code, qi, -1)
        start = (page - 1) * PAGE
        return [k._view(h) for h in hs[start:start + PAGE]], len(hs)

    # -- pages -------------------------------------------------------------------------

    def page_overview(self) -> str:
        d = self.overview_data()
        total = max(d["tasks"], 1)
        rows = "".join(
            f'<tr><th>{e(s)}</th><td class="num" data-stat="counts" data-key="{e(s)}">'
            f'{n}</td><td><progress max="{total}" value="{n}" data-bar="{e(s)}">'
            f'</progress></td></tr>' for s, n in d["counts"].items())
        queues = "".join(
            f'<tr><td><a href="/ui/tasks?{e(urlencode({"queue": name}))}">{e(name)}</a></td>'
            + "".join(f'<td class="num" data-stat="queues" data-key="{e(name)}" '
                      f'data-field="{f}">{e(v[f])}</td>'
                      for f in ("ready", "running", "max_concurrent", "paused", "total"))
            + "</tr>" for name, v in d["queues"].items())
        agents = "".join(
            f'<tr><td>{e(name)}</td><td>{e(", ".join(v["capabilities"]))}</td>'
            + "".join(f'<td class="num" data-stat="agents" data-key="{e(name)}" '
                      f'data-field="{f}">{e(v[f])}</td>' for f in ("capacity", "active",
                                                                    "online"))
            + '<td class="leases">' + ", ".join(
                f'<a href="/ui/tasks/{e(quote(t, safe=""))}">{e(t)}</a> (until '
                f'{e(_when(exp)[11:])})' for t, exp in v["leases"][:10])
            + (f' and {len(v["leases"]) - 10} more' if len(v["leases"]) > 10 else "")
            + "</td></tr>" for name, v in d["agents"].items())
        shown = ("READY", "RUNNING", "RETRYING", "PENDING")
        prios = "".join(
            f'<tr><th>{e(p)}</th>' + "".join(
                f'<td class="num" data-stat="by_priority" data-key="{e(p)}" '
                f'data-field="{s}">{c.get(s, 0)}</td>' for s in shown) + "</tr>"
            for p, c in d["by_priority"].items())
        body = (
            '<h1>Overview</h1><p class="live" data-poll="/ui/api/overview">Tasks '
            f'<span class="num" data-stat="tasks">{d["tasks"]}</span>, events '
            f'<span class="num" data-stat="events">{d["events"]}</span>, sessions '
            f'<span class="num" data-stat="sessions">{d["sessions"]}</span> '
            '<span id="updated"></span></p>'
            f'<h2>By status</h2><table id="counts">{rows}</table>'
            '<h2>Queues</h2><table id="queues"><tr><th>queue</th><th>ready</th><th>running'
            '</th><th>max concurrent</th><th>paused</th><th>tasks</th></tr>'
            f'{queues}</table>'
            '<h2>By priority</h2><table id="priorities"><tr><th>priority</th>'
            + "".join(f"<th>{s.lower()}</th>" for s in shown) + f'</tr>{prios}</table>'
            '<h2>Agents</h2><table id="agents"><tr><th>agent</th><th>capabilities</th>'
            '<th>capacity</th><th>active leases</th><th>online</th><th>leases (UTC)</th></tr>'
            f'{agents}</table>')
        return self._wrap("Overview", body)

    def page_queues(self) -> str:
        d = self.overview_data()["queues"]
        rows = []
        for name, v in d.items():
            verb = "resume" if v["paused"] else "pause"
            rows.append(
                f'<tr data-queue="{e(name)}"><td>{e(name)}</td>'
                f'<td class="state">{"paused" if v["paused"] else "running"}</td>'
                f'<td class="num">{v["max_concurrent"]}</td><td class="num">{v["running"]}'
                f'</td><td class="num">{v["ready"]}</td><td class="num">{v["total"]}</td>'
                f'<td><button data-post="/ui/api/queues/{e(quote(name, safe=""))}/{verb}" '
                f'id="{verb}-{e(name)}">{verb}</button></td></tr>')
        body = ('<h1>Queues</h1><p id="msg" class="msg"></p><table id="queue-table"><tr>'
                '<th>queue</th><th>state</th><th>max concurrent</th><th>running</th>'
                f'<th>ready</th><th>tasks</th><th></th></tr>{"".join(rows)}</table>')
        return self._wrap("Queues", body)

    def page_tasks(self, status: str | None, queue: str | None, page_s: str, base: str,
                   title: str) -> str:
        if not page_s.isdigit() or not 1 <= int(page_s) <= 2**31:
            raise InvalidSpecError(f"page must be a positive integer, got {page_s!r:.40}")
        page = int(page_s)
        views, total = self.task_page(status, queue, page)
        pages = max(1, -(-total // PAGE))
        dead = base == "/ui/dead"
        rows = "".join(
            f'<tr><td><a href="/ui/tasks/{e(quote(v.id, safe=""))}">{e(v.id)}</a></td>'
            f'<td>{e(v.queue)}</td><td>{e(v.name or "")}</td><td>{e(v.status)}</td>'
            f'<td class="num">{v.priority}</td><td class="num">{v.attempts}/'
            f'{v.max_attempts}</td><td>{e(v.agent or "")}</td>'
            f'<td>{e(_when(v.submitted_at))}</td><td class="err">{e(v.error or "")}</td>'
            + (f'<td><button data-post="/ui/api/tasks/{e(quote(v.id, safe=""))}/requeue">'
               'requeue</button></td>' if dead else "") + "</tr>" for v in views)

        def link(n: int, text: str) -> str:
            args = {k: v for k, v in (("status", None if dead else status), ("queue", queue),
                                      ("page", str(n))) if v}
            return f'<a href="{base}?{e(urlencode(args))}" rel="{text}">{text}</a>'

        nav = (f'<p class="pager">page <span id="page">{page}</span> of '
               f'<span id="pages">{pages}</span>, <span id="total">{total}</span> tasks '
               + (link(page - 1, "prev") if page > 1 else "")
               + (" " + link(page + 1, "next") if page < pages else "") + "</p>")
        status_opts = "".join(f'<option{" selected" if s == status else ""}>{e(s)}</option>'
                              for s in ("", *STATUSES))
        form = "" if dead else (
            '<form method="get" action="/ui/tasks" class="filter"><label>id <input name="id">'
            '</label> <label>status '
            f'<select name="status">{status_opts}</select></label> <label>queue <input '
            f'name="queue" value="{e(queue or "")}"></label> <button type="submit">filter'
            '</button></form>')
        bulk = ('<p><button data-post="/ui/api/dead/requeue" id="requeue-all">requeue all'
                f'</button> (at most {BATCH} a click)</p>') if dead and total else ""
        body = (f'<h1>{e(title)}</h1>{form}{bulk}<p id="msg" class="msg"></p>{nav}'
                '<table id="task-table"><tr><th>id</th><th>queue</th><th>name</th>'
                '<th>status</th><th>priority</th><th>attempts</th><th>agent</th>'
                f'<th>submitted</th><th>error</th>{"<th></th>" if dead else ""}</tr>{rows}'
                '</table>')
        return self._wrap(title, body)

    def page_task(self, task_id: str) -> str:
        k = self.server.kernel
        v = k.task(task_id)
        fields = [("status", v.status), ("queue", v.queue), ("name", v.name or ""),
                  ("priority", v.priority), ("attempts", f"{v.attempts}/{v.max_attempts}"),
                  ("timeout", f"{v.timeout:g} s"), ("agent", v.agent or ""),
                  ("lease", v.lease_id or ""), ("submitted", _when(v.submitted_at)),
                  ("started", _when(v.started_at)), ("finished", _when(v.finished_at)),
                  ("due", _when(v.due_at)), ("expires", _when(v.expires_at)),
                  ("key", v.key or ""), ("parent", v.parent or ""),
                  ("tags", _text(v.tags) if v.tags else ""), ("error", v.error or "")]
        dl = "".join(f'<dt>{e(n)}</dt><dd id="f-{e(n)}">{e(x)}</dd>' for n, x in fields)
        deps = "".join(f'<li><a href="/ui/tasks/{e(quote(d, safe=""))}">{e(d)}</a></li>'
                       for d in v.depends_on) or "<li>none</li>"
        timeline = []
        hist = k.history(task_id)
        if len(hist) > HISTORY:
            timeline.append(f"<li>{len(hist) - HISTORY} earlier events not shown</li>")
        for ev in hist[-HISTORY:]:
            extra = {n: x for n, x in ev.items()
                     if n not in ("v", "t", "task", "offset", "ts", "payload", "result")}
            timeline.append(
                f'<li><span class="kind">{e(ev.get("t", "?"))}</span> '
                f'<span class="when">{e(_when(ev["ts"] / 1e9 if "ts" in ev else None))}</span>'
                f' <span class="offset">#{e(ev.get("offset"))}</span> '
                f'<code>{e(_text(extra))}</code></li>')
        tid = e(quote(v.id, safe=""))
        body = (f'<h1>Task <span id="task-id">{e(v.id)}</span></h1><p id="msg" class="msg">'
                f'</p><p><button data-post="/ui/api/tasks/{tid}/cancel" id="cancel">cancel'
                f'</button> <button data-post="/ui/api/tasks/{tid}/requeue" id="requeue">'
                f'requeue</button></p><dl class="fields">{dl}</dl>'
                f'<h2>Depends on</h2><ul>{deps}</ul>'
                f'<h2>Payload</h2><pre id="payload">{e(_text(v.payload))}</pre>'
                f'<h2>Result</h2><pre id="result">{e(_text(v.result))}</pre>'
                f'<h2>History</h2><ol class="timeline" id="history">{"".join(timeline)}</ol>')
        return self._wrap(f"Task {v.id}", body)
