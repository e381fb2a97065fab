"""Allow ``python -m mie``."""

from mie.cli import main

raise SystemExit(main())
