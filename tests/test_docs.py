"""README.md's code blocks run, and its two commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_blocks_run(capsys):
    blocks = _blocks("python")
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert "COMPLETED" in capsys.readouterr().out


def test_readme_starts_with_the_two_commands():
    first = _blocks("sh")[0]
    lines = [ln for ln in first.splitlines() if ln and not ln.startswith("#")]
    assert lines[0].endswith("eskernel demo")
    assert "pip install -e '.[test]'" in lines[1] and lines[1].endswith("pytest -q")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = _blocks("sh")[0].splitlines()[-1].split("&& ")[-1]
    assert test_cmd in ci
