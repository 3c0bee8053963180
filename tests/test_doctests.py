"""The examples in the installed package's docstrings run and print what they show.

The package is imported as installed (``eskernel``, its subpackages mapped from the
repository's folders), so each example is checked under the names a user types.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import eskernel

#: Modules that import optional or heavy parts on import and hold no examples.
SKIP = {"eskernel.__main__"}


def _modules() -> list[str]:
    import eskernel.analytics
    import eskernel.eventlog
    names = set()
    # Each mapped folder is walked from its own package (an editable install maps them
    # separately, so eskernel's path alone does not lead to them).
    for pkg in (eskernel, eskernel.eventlog, eskernel.analytics):
        names.add(pkg.__name__)
        names.update(info.name for info in pkgutil.walk_packages(pkg.__path__,
                                                                 prefix=pkg.__name__ + "."))
    return sorted(names - SKIP)


MODULES = _modules()


def test_the_walk_finds_every_subpackage():
    for name in ("eskernel.eventlog", "eskernel.analytics", "eskernel.runtime",
                 "eskernel.cli", "eskernel.verify"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)       # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_documented_modules_hold_examples():
    # A walk that silently found no examples would pass the test above vacuously.
    finder = doctest.DocTestFinder()
    attempted = {name: sum(len(t.examples) for t in finder.find(importlib.import_module(name)))
                 for name in ("eskernel", "eskernel.events", "eskernel.errors")}
    assert all(attempted.values()), attempted
