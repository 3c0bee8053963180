"""``eskernel serve`` and ``eskernel worker`` answer bad input with one error line."""

from __future__ import annotations

import subprocess
import sys

from eskernel import Kernel


def run(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eskernel", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_serve_refuses_a_locked_directory(tmp_path):
    with Kernel.open(tmp_path / "log"):
        r = run("serve", str(tmp_path / "log"), "--listen", "127.0.0.1:0")
    assert r.returncode == 1 and r.stderr.startswith("error:") and "lock" in r.stderr.lower()
    assert "Traceback" not in r.stderr


def test_serve_refuses_bad_options(tmp_path):
    bad = tmp_path / "tokens"
    bad.write_text("short admin\n")
    for args in (["--token-file", str(bad)], ["--listen", "nowhere"],
                 ["--tls-cert", str(bad)]):
        r = run("serve", str(tmp_path / "log"), *args)
        assert r.returncode in (1, 2), (args, r.stderr)
        assert "error" in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr


def test_worker_refuses_a_bad_target_and_an_unreachable_server(tmp_path):
    r = run("worker", "--connect", "unix:/nonexistent/sock", "--agent", "w", "nomodule")
    assert r.returncode == 1 and r.stderr.startswith("error:"), r.stderr
    (tmp_path / "jobs.py").write_text("def setup(rt):\n    pass\n")
    r = run("worker", "--connect", "unix:/nonexistent/sock", "--agent", "w", "--reconnect",
            "0", "jobs:setup", cwd=tmp_path)
    assert r.returncode == 1 and "cannot reach" in r.stderr, r.stderr
