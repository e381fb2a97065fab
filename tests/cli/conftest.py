"""The on-disk dataset fixtures of tests/data, shared with the ``mie data`` command tests.

Tests are collected with ``--import-mode=importlib`` (no ``tests`` package to import from), so the
helpers module is loaded from its file once, here, rather than copied.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_data_fixtures", Path(__file__).parents[1] / "data" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_data_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data_fixtures)

images = _data_fixtures.images
karpathy_flickr = _data_fixtures.karpathy_flickr
