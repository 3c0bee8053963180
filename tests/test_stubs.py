"""kernel/_core.pyi lists every Python-visible name of the compiled core, checked by stubtest
with an empty allowlist."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Only the stub is checked: the packages around it are type-checked elsewhere.
MYPY_CONFIG = """\
[mypy]
follow_imports = silent
cache_dir = {cache}
[mypy-eventlog.*]
ignore_errors = True
[mypy-kernel.*]
ignore_errors = True
[mypy-kernel._core]
ignore_errors = False
"""


def test_core_stub_matches_the_compiled_module(tmp_path):
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(cache=tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "kernel._core", "--mypy-config-file",
         str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
