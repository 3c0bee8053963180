"""The web dashboard over plain HTTP: pages show the kernel's numbers, every list is cut on
the server, payloads are escaped, and no request without the admin token, the CSRF header
and a same-origin ``Origin`` changes anything."""

from __future__ import annotations

import json
import re

import pytest

from eskernel.service import Client
from eskernel.service.dashboard import PAGE
from tests.service.dashboard_workload import (ADMIN, CSRF, HOSTILE, PRODUCER, kernel_call,
                                              request, start)


@pytest.fixture
def served(tmp_path, sockdir):
    st = start(tmp_path / "log", str(sockdir / "d"))
    yield st
    st.stop()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def state(st):
    """What the buttons could change: every task's status and each queue's pause flag."""
    return kernel_call(st, lambda k: (k.next_offset,
                                      {v.id: v.status for v in k.tasks()},
                                      {q.name: q.paused for q in k.stats().queues}))


def test_pages_render_read_only_on_loopback_without_a_token(served):
    for path in ("/ui/", "/ui/queues", "/ui/tasks", "/ui/tasks?status=READY&queue=q",
                 "/ui/tasks/t1", "/ui/dead", "/ui/login"):
        status, headers, body = request(served, "GET", path)
        assert status == 200, (path, body[:300])
        assert headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in headers["content-security-policy"]
        assert b'<script src="/ui/assets/dashboard.js"' in body
    for name in ("dashboard.js", "dashboard.css"):
        status, _, body = request(served, "GET", f"/ui/assets/{name}")
        assert status == 200 and body
    assert request(served, "GET", "/ui/assets/..%2Fhttp.py")[0] == 404


def test_overview_numbers_are_the_kernels(served):
    status, _, body = request(served, "GET", "/ui/api/overview")
    data = json.loads(body)
    st = kernel_call(served, lambda k: k.stats())
    assert status == 200
    assert data["counts"] == st.counts and data["tasks"] == st.tasks
    for q in st.queues:
        assert data["queues"][q.name] == {"paused": q.paused, "max_concurrent":
                                          q.max_concurrent, "running": q.running,
                                          "ready": q.ready, "total": sum(q.counts.values())}
    assert {a.id: a.active for a in st.agents} == {n: a["active"]
                                                  for n, a in data["agents"].items()}
    page = request(served, "GET", "/ui/")[2].decode()
    for name, n in st.counts.items():
        assert f'data-stat="counts" data-key="{name}">{n}</td>' in page
    assert data["by_priority"] == {str(p): c for p, c in st.by_priority.items()}
    for p, c in st.by_priority.items():
        assert f'data-key="{p}" data-field="READY">{c["READY"]}</td>' in page
    leases = {a.id: [x["task_id"] for x in a.leases] for a in st.agents}
    assert {n: [t for t, _ in a["leases"]] for n, a in data["agents"].items()} == leases
    for task_id in leases["w"]:
        assert f'<a href="/ui/tasks/{task_id}">{task_id}</a> (until' in page


def test_task_list_is_paginated_on_the_server(tmp_path, sockdir):
    st = start(tmp_path / "log", str(sockdir / "p"), n_tasks=2 * PAGE + 7)
    try:
        ids = kernel_call(st, lambda k: [v.id for v in k.tasks()])
        shown = []
        for page in (1, 2, 3):
            body = request(st, "GET", f"/ui/tasks?page={page}")[2].decode()
            rows = re.findall(r'<tr><td><a href="/ui/tasks/([^"]+)">', body)
            assert len(rows) == (PAGE if page < 3 else len(ids) - 2 * PAGE)
            assert f'<span id="total">{len(ids)}</span>' in body
            shown += rows
        assert shown == ids
        ready = kernel_call(st, lambda k: [v.id for v in k.tasks(status="READY",
                                                                queue="batch")])
        body = request(st, "GET", "/ui/tasks?status=READY&queue=batch")[2].decode()
        assert re.findall(r'<tr><td><a href="/ui/tasks/([^"]+)">', body) == ready[:PAGE]
    finally:
        st.stop()


def test_bad_input_gets_a_typed_error_page(served):
    for path, code, kind in (("/ui/tasks?page=0", 400, "InvalidSpecError"),
                             ("/ui/tasks?page=x", 400, "InvalidSpecError"),
                             ("/ui/tasks?status=BOGUS", 400, "InvalidSpecError"),
                             ("/ui/tasks?queue=nope", 404, "UnknownQueueError"),
                             ("/ui/tasks/nope", 404, "UnknownTaskError"),
                             ("/ui/nothing", 404, "NotFoundError")):
        status, _, body = request(served, "GET", path)
        assert status == code and f"<h1>{kind}</h1>".encode() in body, (path, body[-400:])


def test_html_payload_is_escaped(served):
    status, _, body = request(served, "GET", "/ui/tasks/hostile")
    page = body.decode()
    assert status == 200
    assert "<script>document" not in page and "<img src=x" not in page
    assert "<b>bold</b>" not in page and "<i>boom</i>" not in page
    assert "&lt;script&gt;document.title=" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert HOSTILE not in page
    listing = request(served, "GET", "/ui/tasks")[2].decode()
    assert "<b>bold</b>" not in listing and "&lt;b&gt;bold&lt;/b&gt;" in listing


ACTIONS = ("/ui/api/queues/q/pause", "/ui/api/tasks/t1/cancel", "/ui/api/tasks/dead/requeue",
           "/ui/api/dead/requeue")


def test_no_action_without_the_admin_token(served):
    before = state(served)
    for path in ACTIONS:
        assert request(served, "POST", path, CSRF)[0] == 401
        assert request(served, "POST", path, {**CSRF, **bearer("not-a-token-at-all-000")}
                       )[0] == 401
        status, _, body = request(served, "POST", path, {**CSRF, **bearer(PRODUCER)})
        assert status == 403 and json.loads(body)["type"] == "PermissionDeniedError"
        assert request(served, "GET", path, bearer(ADMIN))[0] == 404   # never a GET
    assert state(served) == before


def test_post_without_the_csrf_header_or_from_another_origin_is_refused(served):
    before = state(served)
    status, _, cookie = login(served, ADMIN)
    for path in ACTIONS:
        for headers in (bearer(ADMIN), {"Cookie": cookie},
                        {**CSRF, **bearer(ADMIN), "Origin": "http://evil.example"},
                        {**CSRF, "Cookie": cookie, "Origin": "http://evil.example"}):
            status, _, body = request(served, "POST", path, headers)
            assert status == 403, (path, headers)
            assert json.loads(body)["type"] == "PermissionDeniedError"
    assert state(served) == before


def login(st, token):
    status, headers, body = request(st, "POST", "/ui/login",
                                    {"Content-Type": "application/x-www-form-urlencoded"},
                                    f"token={token}".encode())
    return status, headers, headers.get("set-cookie", "").split(";")[0]


def test_admin_actions_change_the_kernel(served):
    status, headers, cookie = login(served, ADMIN)
    assert status == 303 and headers["location"] == "/ui/"
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert login(served, "wrong-token-000000000000")[0] == 401
    host, port = served.server.http_addresses[0]
    same = {**CSRF, "Cookie": cookie, "Origin": f"http://{host}:{port}"}
    assert request(served, "POST", "/ui/api/queues/q/pause", same)[0] == 200
    assert kernel_call(served, lambda k: k.stats().queues[0].paused) is True
    assert request(served, "POST", "/ui/api/queues/q/resume", {**CSRF, **bearer(ADMIN)}
                   )[0] == 200
    assert request(served, "POST", "/ui/api/tasks/dead/requeue", same)[0] == 200
    assert request(served, "POST", "/ui/api/tasks/t1/cancel", same)[0] == 200
    views = kernel_call(served, lambda k: (k.task("dead").status, k.task("t1").status,
                                           k.stats().queues[0].paused))
    assert views == ("READY", "CANCELLED", False)
    status, _, body = request(served, "POST", "/ui/api/tasks/t1/requeue", same)
    assert status == 409 and json.loads(body)["message"]


def test_requeue_all_dead_letters(served):
    with Client(served.address, token=ADMIN) as c:
        for i in range(3):
            c.submit("batch", id=f"x{i}", max_attempts=1, priority=0)
        for _ in range(3):
            lease = c.claim("w")
            c.fail(lease, "no", retryable=False)
    dead = kernel_call(served, lambda k: [v.id for v in k.dead_letters()])
    assert len(dead) >= 3
    page = request(served, "GET", "/ui/dead")[2].decode()
    assert 'id="requeue-all"' in page
    status, _, body = request(served, "POST", "/ui/api/dead/requeue", {**CSRF, **bearer(ADMIN)})
    assert (status, json.loads(body)) == (200, {"requeued": len(dead), "remaining": 0})
    assert kernel_call(served, lambda k: ([v.id for v in k.dead_letters()],
                                          {k.task(t).status for t in dead})) == ([], {"READY"})
    assert 'id="requeue-all"' not in request(served, "GET", "/ui/dead")[2].decode()


def test_search_by_id(served):
    status, _, body = request(served, "GET", "/ui/tasks?id=t3")
    assert status == 200 and b'<span id="task-id">t3</span>' in body
    assert request(served, "GET", "/ui/tasks?id=nope")[0] == 404


def test_reads_need_a_token_off_loopback(served):
    server = served.server
    real = list(server.http_addresses)
    at = real[0]

    def get(path, headers=None):
        return request(served, "GET", path, headers, address=at)[0]

    served.call(lambda: setattr(server, "http_addresses", [("192.0.2.10", at[1])]))
    try:
        for path in ("/ui/", "/ui/api/overview", "/ui/tasks/t1"):
            assert get(path) == 401
            assert get(path, bearer("wrong-token-000000000000")) == 401
            assert get(path, bearer(PRODUCER)) == 200
        status, headers, _ = request(served, "POST", "/ui/login", {"Content-Type":
                                     "application/x-www-form-urlencoded"},
                                     f"token={PRODUCER}".encode(), address=at)
        assert status == 303
        assert get("/ui/", {"Cookie": headers["set-cookie"].split(";")[0]}) == 200
        assert get("/ui/login") == 200          # the way in stays open
    finally:
        served.call(lambda: setattr(server, "http_addresses", real))


def test_a_rebound_host_name_gets_no_loopback_access(served):
    before = state(served)
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        assert request(served, "GET", "/ui/", {"Host": host})[0] == 403
        assert request(served, "GET", "/ui/api/overview", {"Host": host})[0] == 403
        assert request(served, "POST", "/ui/api/queues/q/pause", {**CSRF, "Host": host}
                       )[0] == 403
    port = served.server.http_addresses[0][1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]:80"):
        assert request(served, "GET", "/ui/", {"Host": host})[0] == 200, host
    assert request(served, "GET", "/ui/", {"Host": "evil.example", **bearer(PRODUCER)}
                   )[0] == 200                     # a token is accepted under any name
    assert state(served) == before


def test_login_from_another_origin_is_refused(served):
    status, headers, _ = request(served, "POST", "/ui/login",
                                 {"Content-Type": "application/x-www-form-urlencoded",
                                  "Origin": "http://evil.example"}, f"token={ADMIN}".encode())
    assert status == 403 and "set-cookie" not in headers
