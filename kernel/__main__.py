"""``python -m eskernel``: the ``eskernel`` command line."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
