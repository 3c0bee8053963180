"""Mutation check for the event log: every mutant in ``mutants.py`` must be killed.

Run from the repository root, with the interpreter that has the test dependencies and the
build requirements (``pip install 'Cython>=3.1' 'setuptools>=77'``)::

    python -m tests.mutation.run                 # all mutants
    python -m tests.mutation.run --only durable-before-io crc-frame-skips-last-byte
    python -m tests.mutation.run --list

It copies the working tree (tracked and untracked, not ignored, files) into a temporary
directory, builds the extensions there in place (``setup.py build_ext --inplace``) and
checks that the unmutated copy passes.  Then, for each mutant: apply its edits, rebuild if a
``_native/`` file changed (or the last build was of a mutant), run the log's tests with
``-x`` and the copy first on ``sys.path``, restore the files.  It prints a table (mutant,
killed or SURVIVED, the first failing test, seconds) and exits 1 if any mutant survived or
an edit no longer applies.  A mutant that hangs past ``--timeout`` counts as killed.  The
whole run takes about five minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Fast, targeted files first: with -x the first failure ends the run.
TESTS = ["tests/eventlog/test_checksums.py", "tests/eventlog/test_corruption.py",
         "tests/eventlog/test_durability.py", "tests/eventlog/test_faults.py",
         "tests/eventlog/test_modes.py", "tests/eventlog/test_crash.py"]


def copy_tree(dest: Path) -> None:
    """The working tree's source files (no build products, no venv) into ``dest``."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = []
    if not listed or listed == [""]:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.so", "*.c", "__pycache__", ".hypothesis"))
        return
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def link_package(scratch: Path) -> None:
    """Lay the copy out as the installed package: ``.import/eskernel`` is ``kernel/``, with
    ``eventlog/`` and ``analytics/`` inside it (setup.py's package-dir mapping)."""
    (scratch / ".import").mkdir()
    (scratch / ".import" / "eskernel").symlink_to(scratch / "kernel")
    for sub in ("eventlog", "analytics"):
        (scratch / "kernel" / sub).symlink_to(scratch / sub)


def run(cmd: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
    """(exit status or None on timeout, combined output); kills the whole process group."""
    path = os.pathsep.join([str(cwd / ".import"), str(cwd)])
    env = os.environ | {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace")
    return proc.returncode, out.decode(errors="replace")


def build(scratch: Path) -> None:
    code, out = run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], scratch, 600)
    if code != 0:
        raise SystemExit(f"build failed in {scratch}:\n{out[-4000:]}")


def pytest(scratch: Path, tests: list[str], timeout: float) -> tuple[int | None, str]:
    return run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                *tests], scratch, timeout)


def first_failure(out: str) -> str:
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    return m.group(1).removeprefix("tests/eventlog/") if m else "(no test named)"


def main(argv: list[str] | None = None) -> int:
    from tests.mutation.mutants import MUTANTS, Mutant

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run just these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("tests", nargs="*", default=TESTS, help="test paths to run")
    args = parser.parse_args(argv)
    mutants: list[Mutant] = list(MUTANTS)
    if args.list:
        for m in mutants:
            print(f"{m.name:32} {m.what}")
        return 0
    if args.only:
        unknown = set(args.only) - {m.name for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutants: {', '.join(sorted(unknown))}; see --list")
        mutants = [m for m in mutants if m.name in args.only]
    try:
        import Cython  # noqa: F401
        import setuptools
    except ImportError:
        raise SystemExit("Cython and setuptools are needed to rebuild the mutants: "
                         "pip install 'Cython>=3.1' 'setuptools>=77'")
    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (77, 0):
        raise SystemExit(f"setuptools {setuptools.__version__} cannot read pyproject.toml's "
                         "license field: pip install 'setuptools>=77'")

    scratch = Path(tempfile.mkdtemp(prefix="eskernel-mutants-"))
    rows: list[tuple[str, str, str, float]] = []
    started = time.monotonic()
    try:
        copy_tree(scratch)
        print(f"scratch copy: {scratch}", flush=True)
        build(scratch)
        link_package(scratch)
        code, out = run([sys.executable, "-c", "import eskernel, eskernel.eventlog as e; "
                         "print(e.__file__); print(eskernel.__file__); "
                         "print(eskernel._core.__file__)"], scratch, 60)
        if code != 0 or any(not line.startswith(str(scratch))
                            for line in out.split()):
            raise SystemExit(f"the scratch copy is not what gets imported:\n{out}")
        code, out = pytest(scratch, args.tests, args.timeout)
        if code != 0:
            raise SystemExit(f"the unmutated copy fails its tests:\n{out[-4000:]}")
        print(f"baseline: passed ({time.monotonic() - started:.0f} s)", flush=True)
        dirty = False       # the built extensions are a mutant's
        for mutant in mutants:
            t0 = time.monotonic()
            originals: dict[str, str] = {}
            stale = ""
            for edit in mutant.edits:
                path = scratch / edit.path
                originals.setdefault(edit.path, path.read_text())
                current = path.read_text()
                if current.count(edit.old) != edit.count:
                    stale = (f"{edit.path}: expected {edit.count} of {edit.old!r}, "
                             f"found {current.count(edit.old)}")
                    break
                path.write_text(current.replace(edit.old, edit.new))
            native = any(e.path.startswith("_native/") for e in mutant.edits)
            try:
                if stale:
                    rows.append((mutant.name, "STALE", stale, time.monotonic() - t0))
                    continue
                if native or dirty:
                    build(scratch)
                dirty = native
                code, out = pytest(scratch, args.tests, args.timeout)
                if code is None:
                    result, by = "killed", f"(hung past {args.timeout:.0f} s)"
                elif code == 0:
                    result, by = "SURVIVED", "-"
                else:
                    result, by = "killed", first_failure(out)
                rows.append((mutant.name, result, by, time.monotonic() - t0))
            finally:
                for rel, text in originals.items():
                    (scratch / rel).write_text(text)
            print(f"  {mutant.name}: {rows[-1][1]} {rows[-1][2]} ({rows[-1][3]:.0f} s)",
                  flush=True)
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print("| mutant | result | killed by (first failing test) | s |")
    print("| --- | --- | --- | ---: |")
    for name, result, by, secs in rows:
        print(f"| {name} | {result} | {by} | {secs:.0f} |")
    bad = [r for r in rows if r[1] != "killed"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} mutants killed "
          f"in {time.monotonic() - started:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
