"""Shared pytest set-up: deterministic seeds, few threads (CI has 2 cores), a headless matplotlib."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state so failures reproduce."""
    torch.manual_seed(0)
    yield
