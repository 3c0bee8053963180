"""The wheel ships one top-level name, ``eskernel``, and works from the repository's root.

Built from this checkout, installed without dependencies into a fresh virtual environment
that borrows the test environment's third-party packages (a ``.pth`` line: the borrowed
folder's own ``.pth`` files, among them the editable install's, are not run), then imported
with the repository root as the working directory and first on the path, where the source
folders ``kernel/``, ``eventlog/`` and ``analytics/`` sit.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _can_build_here() -> bool:
    # The build requirements of pyproject.toml (setuptools 77+: it builds wheels by itself
    # and reads the SPDX license string).
    if not all(importlib.util.find_spec(m) for m in ("Cython", "setuptools")):
        return False
    import setuptools
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (77, 0)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)]
    if _can_build_here():     # build with what is here: no download
        cmd.insert(4, "--no-build-isolation")
    subprocess.run(cmd, check=True, timeout=900)
    (built,) = out.glob("eskernel-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"eskernel", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for part in ("eskernel/__init__.py", "eskernel/eventlog/__init__.py",
                 "eskernel/analytics/__init__.py", "eskernel/runtime/__init__.py",
                 "eskernel/cli/__init__.py", "eskernel/verify.py", "eskernel/py.typed",
                 "eskernel/eventlog/py.typed", "eskernel/analytics/py.typed",
                 "eskernel/service/dashboard.py", "eskernel/service/assets/layout.html",
                 "eskernel/service/assets/dashboard.css", "eskernel/service/assets/dashboard.js",
                 "eskernel/service/assets/favicon.svg"):
        assert part in names, part
    assert any(n.startswith("eskernel/_core.") and n.endswith(".so") for n in names)
    assert any(n.startswith("eskernel/eventlog/_framing.") and n.endswith(".so") for n in names)
    assert not any(n.endswith((".pyx", ".pxi", ".c")) for n in names)


def test_the_installed_wheel_is_what_a_script_in_the_repository_imports(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, timeout=300)
    script = ("import sys, eskernel, eskernel.eventlog, eskernel.analytics, eskernel.runtime, "
              "eskernel.cli, eskernel.verify, eskernel._core\n"
              "for m in ('kernel', 'eventlog', 'analytics'):\n"
              "    assert m not in sys.modules, m\n"
              "print(eskernel.__version__)\n"
              "print(eskernel.__file__)\n"
              "print(eskernel.eventlog._framing.__file__)\n"
              "k = eskernel.Kernel.in_memory()\n"
              "k.declare_queue('q'); k.register_agent('a', capabilities=['q'])\n"
              "k.submit('q', payload={'x': 1}); print(k.claim('a').task_id is not None)\n")
    res = subprocess.run([py, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    version, init, framing, claimed = res.stdout.split()
    assert version == wheel.name.split("-")[1]
    assert Path(init).is_relative_to(site) and Path(framing).is_relative_to(site)
    assert claimed == "True"
    cli = subprocess.run([py, "-m", "eskernel", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and version in cli.stdout, cli.stderr


def test_every_source_package_is_shipped(wheel):
    # pyproject.toml lists the packages by hand (package-dir maps the folders): a new
    # subpackage left out of the list would be missing from every installed copy.
    folders = {"kernel": "eskernel", "eventlog": "eskernel/eventlog",
               "analytics": "eskernel/analytics"}
    want = set()
    for folder, target in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            want.add(f"{target}/{rel.as_posix()}/__init__.py".replace("/./", "/"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert want - names == set()
