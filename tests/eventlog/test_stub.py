"""eventlog/_framing.pyi lists every Python-visible name of the compiled framing module,
checked by stubtest with an empty allowlist."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MYPY_CONFIG = """\
[mypy]
cache_dir = {cache}
follow_imports = silent
[mypy-eventlog.*]
ignore_errors = True
[mypy-eventlog._framing]
ignore_errors = False
"""


def test_framing_stub_matches_the_compiled_module(tmp_path: Path) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(cache=tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "eventlog._framing", "--mypy-config-file",
         str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
