"""``eskernel worker`` drains on SIGTERM; the server speaks TLS; the asyncio client."""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
import subprocess
import sys
import time

import pytest

from eskernel import ServiceUnavailableError
from eskernel.service import AsyncClient, Client
from eskernel.service.run import ServerThread, tls_context
from tests.service.helpers import ServerProcess

JOBS = '''
import asyncio, os
from pathlib import Path

def setup(rt):
    @rt.handler("q")
    async def slow(payload):
        await asyncio.sleep(1.0)
        Path(os.environ["DONE_DIR"], payload["n"]).touch()
        return payload["n"]
'''


def test_worker_drains_on_sigterm(tmp_path, sockdir):
    (tmp_path / "jobs.py").write_text(JOBS)
    done = tmp_path / "done"
    done.mkdir()
    with ServerProcess(tmp_path / "log", sockdir / "w") as server:
        with Client(server.address) as c:
            c.declare_queue("q")
            env = {"DONE_DIR": str(done), "PATH": "/usr/bin:/bin"}
            worker = subprocess.Popen(
                [sys.executable, "-m", "eskernel", "worker", "--connect", server.address,
                 "--agent", "w1", "--queue", "q", "--capacity", "2", "--grace", "20",
                 "jobs:setup"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
            try:
                ids = [c.submit("q", {"n": f"t{i}"}) for i in range(2)]
                while any(c.task(i).status != "RUNNING" for i in ids):
                    assert worker.poll() is None, worker.stderr.read().decode()
                    time.sleep(0.02)
                worker.send_signal(signal.SIGTERM)
                late = c.submit("q", {"n": "late"})
                assert worker.wait(60) == 0
                # the two running tasks finished within the grace; nothing new was claimed
                assert [c.task(i).status for i in ids] == ["COMPLETED", "COMPLETED"]
                assert sorted(p.name for p in done.iterdir()) == ["t0", "t1"]
                assert c.task(late).status == "READY"
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(30)
                worker.stderr.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_tls(tmp_path, cert):
    certfile, keyfile = cert
    ctx = tls_context(str(certfile), str(keyfile))
    with ServerThread(tmp_path / "log", listen="127.0.0.1:0", ssl=ctx) as st:
        trust = ssl.create_default_context(cafile=str(certfile))
        with Client(st.address, ssl=trust) as c:
            c.declare_queue("q")
            assert c.task(c.submit("q", id="secure")).status == "READY"
        with pytest.raises(ServiceUnavailableError):    # plaintext to a TLS port
            Client(st.address, reconnect=0)
        with pytest.raises(ServiceUnavailableError):    # a certificate it does not trust
            Client(st.address, reconnect=0, ssl=ssl.create_default_context())
        with Client(st.address, ssl=trust) as c:         # still serving
            assert c.task("secure").status == "READY"


def test_async_client(tmp_path, sockdir):
    with ServerThread(tmp_path / "log", unix=str(sockdir / "a")) as st:
        async def main():
            async with AsyncClient(st.address) as c:
                await c.declare_queue("q")
                await c.register_agent("w", ["q"], 2)
                tid = await c.submit("q", {"x": 1})
                lease = await c.claim("w", wait=5)
                await c.complete(lease, "ok")
                return (await c.wait(tid, timeout=5)).result
        assert asyncio.run(main()) == "ok"
