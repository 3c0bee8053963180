"""The HTTP side: health, readiness, Prometheus metrics, the REST API and its OpenAPI
description, with the same roles and typed errors as the wire."""

from __future__ import annotations

import http.client
import json

import pytest

from eskernel.service import Client, Tokens
from eskernel.service.auth import Identity
from eskernel.service.run import ServerThread

ADMIN = "admin-token-http-000000000"
PRODUCER = "producer-token-http-000000"


@pytest.fixture
def served(tmp_path, sockdir):
    tokens = Tokens([(ADMIN.encode(), Identity("admin")),
                     (PRODUCER.encode(), Identity("producer"))])
    st = ServerThread(tmp_path / "log", unix=str(sockdir / "h"), tokens=tokens,
                      http="127.0.0.1:0")
    with Client(st.address, token=ADMIN) as c:
        c.declare_queue("q")
        c.register_agent("w", ["q"], 2)
    yield st
    st.stop()


def call(st, method, path, body=None, token=ADMIN):
    host, port = st.server.http_addresses[0]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    ctype = r.getheader("Content-Type", "")
    return r.status, (json.loads(raw) if ctype.startswith("application/json") else raw)


def test_health_and_readiness(served):
    assert call(served, "GET", "/healthz", token=None) == (200, {"status": "ok"})
    assert call(served, "GET", "/readyz", token=None) == (200, {"ready": True})


def test_rest_task_operations(served):
    status, r = call(served, "POST", "/v1/tasks", {"queue": "q", "payload": {"n": 1},
                                                   "id": "h1", "max_attempts": 1})
    assert (status, r) == (201, {"id": "h1"})
    status, v = call(served, "GET", "/v1/tasks/h1")
    assert status == 200 and v["status"] == "READY" and v["payload"] == {"n": 1}
    status, vs = call(served, "GET", "/v1/tasks?status=READY&limit=5")
    assert [x["id"] for x in vs] == ["h1"]
    assert call(served, "POST", "/v1/queues/q/pause")[0] == 200
    assert call(served, "GET", "/v1/stats")[1]["queues"][0]["paused"] is True
    assert call(served, "POST", "/v1/queues/q/resume")[0] == 200
    with Client(served.address, token=ADMIN) as c:
        c.fail(c.claim("w"), "bad", retryable=False)
    assert call(served, "POST", "/v1/tasks/h1/requeue")[0] == 200
    assert call(served, "POST", "/v1/tasks/h1/cancel") == (200, {"cancelled": ["h1"]})


def test_rest_errors_are_typed_and_change_nothing(served):
    before = served.call(lambda: served.server.kernel.next_offset)
    cases = [("POST", "/v1/tasks", {"queue": "nope"}, 404, "UnknownQueueError"),
             ("POST", "/v1/tasks", {"queue": "q", "priority": "x"}, 400, "InvalidSpecError"),
             ("POST", "/v1/tasks", [1, 2], 400, "InvalidSpecError"),
             ("GET", "/v1/tasks/nope", None, 404, "UnknownTaskError"),
             ("POST", "/v1/tasks/nope/cancel", None, 404, "UnknownTaskError"),
             ("GET", "/v1/tasks?limit=-1", None, 400, "InvalidSpecError"),
             ("DELETE", "/v1/everything", None, 404, "NotFoundError")]
    for method, path, body, code, kind in cases:
        status, r = call(served, method, path, body)
        assert (status, r["type"]) == (code, kind), (path, r)
        assert r["message"]
    assert call(served, "GET", "/v1/stats", token="wrong")[0] == 401
    assert call(served, "POST", "/v1/queues/q/pause", token=PRODUCER)[0] == 403
    assert served.call(lambda: served.server.kernel.next_offset) == before


def test_metrics_and_openapi(served):
    with Client(served.address, token=ADMIN) as c:
        c.submit("q", id="m1")
        c.complete(c.claim("w"))
    status, text = call(served, "GET", "/metrics", token=None)
    text = text.decode()
    assert status == 200
    assert 'eskernel_tasks{queue="q",status="COMPLETED"} 1.0' in text
    assert 'eskernel_requests_total{op="claim"}' in text
    assert "eskernel_sessions" in text and "eskernel_request_seconds_bucket" in text
    status, spec = call(served, "GET", "/openapi.json", token=None)
    assert status == 200 and spec["openapi"].startswith("3.")
    assert "/v1/tasks/{task_id}/cancel" in spec["paths"]
