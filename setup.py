"""Build the compiled cores: the scheduler (``eskernel._core``) and the log framing
(``eskernel.eventlog._framing``).  Directives are set once, here.

Switches (environment variables):
  ESKERNEL_DEBUG_BUILD=1  bounds checks on, and the ESKERNEL_DEBUG C macro for invariant checks
  ESKERNEL_ANNOTATE=1     write Cython's annotated HTML next to the sources
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ESKERNEL_DEBUG_BUILD") == "1"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "auto_pickle": False,
    "autotestdict": False,
}
MACROS = [("ESKERNEL_DEBUG", "1" if DEBUG else "0")]
CFLAGS = ["-O3"] if not DEBUG else ["-O0", "-g"]

extensions = [
    Extension("eskernel._core", ["_native/_core.pyx"], define_macros=MACROS,
              extra_compile_args=CFLAGS, include_dirs=["_native"]),
    Extension("eskernel.eventlog._framing", ["_native/_framing.pyx"], define_macros=MACROS,
              extra_compile_args=CFLAGS, include_dirs=["_native"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        include_path=["_native"],
        annotate=os.environ.get("ESKERNEL_ANNOTATE") == "1",
        force=True,
    ),
)
