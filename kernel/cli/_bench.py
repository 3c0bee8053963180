"""``eskernel bench``: run the benchmark suite and print the targets table.

The suite lives in ``bench/`` of the source tree (it is not installed with the package);
this command runs it with pytest-benchmark in a child process, then prints one row per
target (see ``bench/targets.py``) and exits non-zero when a measured target is missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

#: The source tree's root when running from a checkout (kernel/cli/ is two folders down).
ROOT = Path(__file__).resolve().parents[2]


def _bench_dir() -> Path:
    d = ROOT / "bench"
    if not (d / "targets.py").is_file():
        raise click.ClickException(
            f"the benchmark suite was not found at {d}; it ships with the source tree: run "
            "`eskernel bench` from a checkout installed with `pip install -e '.[bench]'` (an "
            "installed wheel holds no benchmarks)")
    return d


def pytest_args(bench_dir: Path, json_path: str, *, quick: bool, compare: bool,
                save: str | None, compare_to: str | None) -> list[str]:
    """The pytest command line of one ``eskernel bench`` run."""
    args = [sys.executable, "-m", "pytest", str(bench_dir), "--benchmark-only", "-q",
            "-p", "no:cacheprovider", "--benchmark-json", json_path,
            "--benchmark-storage", str(ROOT / ".benchmarks"), "-o", "addopts=",
            "-W", "error", "--import-mode=importlib", "--rootdir", str(ROOT)]
    if quick:
        args.append("--bench-quick")
    if compare:
        args.append("--peers")
    if save:
        args += ["--benchmark-save", save]
    if compare_to:
        args += [f"--benchmark-compare=*_{compare_to}", "--benchmark-compare-fail=median:10%"]
    return args


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small workloads: under a minute on 2 cores.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False),
              help="Also write pytest-benchmark's raw JSON here.")
@click.option("--compare", is_flag=True,
              help="Also run installed peers (huey, persist-queue, dask); missing ones are "
                   "listed as skipped.  Install them with the 'compare' extra.")
@click.option("--save", metavar="NAME", help="Save this run in .benchmarks/ under NAME.")
@click.option("--compare-to", metavar="NAME",
              help="Fail when a median is >10% slower than the saved run NAME.")
def bench(quick: bool, json_file: str | None, compare: bool, save: str | None,
          compare_to: str | None) -> None:
    """Run the benchmark suite; print metric, target, measured median (and p99), baseline,
    ratio and PASS/MISS per target.  Exit status 1 when a target is missed."""
    bench_dir = _bench_dir()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import report

    with tempfile.TemporaryDirectory(prefix="eskernel-bench-") as tmp:
        out = json_file or os.path.join(tmp, "bench.json")
        args = pytest_args(bench_dir, out, quick=quick, compare=compare, save=save,
                           compare_to=compare_to)
        click.echo("running: " + " ".join(args[1:]), err=True)
        env = dict(os.environ, ESKERNEL_BENCH_QUICK="1" if quick else "0")
        if quick:  # the analytics benchmarks read their sizes from the environment
            env.setdefault("ESKERNEL_BENCH_EVENTS", "100000")
            env.setdefault("ESKERNEL_BENCH_TASKS", "300000")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if not os.path.exists(out):
            click.echo(proc.stdout[-4000:], err=True)
            raise click.ClickException(f"the benchmark run wrote no results (pytest exit "
                                       f"{proc.returncode}); see the output above")
        data = report.load(out)
    rows = report.rows(data.get("benchmarks", []))
    peers = (report.peer_lines(data.get("benchmarks", []), _skipped()) if compare else None)
    mode = "quick (smaller workloads than the targets name)" if quick else "full"
    click.echo(report.render(rows, header=f"eskernel bench, {mode}", peers=peers))
    failed_tests = proc.returncode not in (0, 5)
    if failed_tests:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        click.echo(f"\nthe benchmark run itself failed (pytest exit {proc.returncode}):\n{tail}",
                   err=True)
    if json_file:
        click.echo(f"raw results: {json_file}")
    if report.exit_code(rows) or failed_tests:
        sys.exit(1)


def _skipped() -> list[tuple[str, str]]:
    from bench.peers import skipped_peers
    skipped: list[tuple[str, str]] = skipped_peers()
    return skipped
