"""Allow ``python -m mie``."""

from mie.cli import main

if __name__ == "__main__":  # importing the module (e.g. the smoke test's walk) must not run the CLI
    raise SystemExit(main())
