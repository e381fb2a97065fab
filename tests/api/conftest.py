"""One tiny finished clip run, trained once per test module through `mie train`, for the tests of
everything that uses a finished run (``mie.load_run``, ``mie eval``, ``mie embed``, ``mie search``).

The run itself is built by :func:`tests.tiny.train_tiny_run`, which the other test folders import too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.tiny import snapshot, train_tiny_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run at ``<tmp>/runs/demo`` with its data at ``<tmp>/data/shapes``."""
    return train_tiny_run(tmp_path_factory.mktemp("finished"))


@pytest.fixture
def snapshot_of():
    """:func:`snapshot`, as a fixture for the test modules."""
    return snapshot
