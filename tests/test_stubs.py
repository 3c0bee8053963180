"""The stubs of the compiled modules (kernel/_core.pyi, eventlog/_framing.pyi:
``eskernel._core``, ``eskernel.eventlog._framing``) list every
Python-visible name, checked by stubtest with an empty allowlist."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Only the stub is checked: the packages around it are type-checked elsewhere.
MYPY_CONFIG = """\
[mypy]
follow_imports = silent
cache_dir = {cache}
[mypy-eskernel.*]
ignore_errors = True
[mypy-{module}]
ignore_errors = False
"""


@pytest.mark.parametrize("module", ["eskernel._core", "eskernel.eventlog._framing"])
def test_stub_matches_the_compiled_module(tmp_path: Path, module: str) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(cache=tmp_path / "cache", module=module))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", module, "--mypy-config-file", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
