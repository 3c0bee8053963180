"""The package type-checks under mypy --strict (``.ci/typecheck``), and what users write
against it checks too: handler decorators keep the function's type, pydantic models take
their fields as keywords (the pydantic plugin is configured)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mypy")

USER_CODE = '''
from eskernel import BackoffPolicy, Kernel
from eskernel.runtime import Runtime

k = Kernel.in_memory()
k.declare_queue("q")
rt = Runtime(k, agents=[("w", ["q"], 1)])

@rt.handler("q")
def resize(payload: dict[str, int]) -> int:
    return payload["w"] * 2

reveal_type(resize)
policy = BackoffPolicy(initial=0.5, factor=3.0)
reveal_type(policy.initial)
'''

BAD_CODE = '''
from eskernel import BackoffPolicy
BackoffPolicy(initial="soon", colour=1)
'''


def typecheck(tmp_path: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run .ci/typecheck")
    args = ["bash", str(ROOT / ".ci" / "typecheck")]
    if code is not None:
        snippet = tmp_path / "user_code.py"
        snippet.write_text(code)
        args.append(str(snippet))
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})


def test_the_package_and_user_code_pass_strict_mypy(tmp_path):
    res = typecheck(tmp_path, USER_CODE)
    out = res.stdout + res.stderr
    assert 'Revealed type is "def (payload: dict[str, int]) -> int"' in out, out
    assert 'Revealed type is "float"' in out, out
    assert "error" not in out.replace("Revealed", ""), out


def test_the_plugin_rejects_a_model_built_wrongly(tmp_path):
    res = typecheck(tmp_path, BAD_CODE)
    out = res.stdout
    assert res.returncode != 0
    assert 'Unexpected keyword argument "colour"' in out, out
    assert 'Argument "initial" to "BackoffPolicy" has incompatible type "str"' in out, out
