"""The cai recipe honours ``threads:`` before its first trainer (SL data and pairs are generated outside
one) and hands it to the ``pretrain`` lm config unless that sets its own."""

import pytest
import torch

import mie.recipes.lm
from mie.recipes.cai import pipeline
from mie.recipes.cai.config import CAIConfig
from mie.training import threads


class Stop(Exception):
    """Ends the pipeline where the test has seen what it needs."""


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(threads, "_requested", None)
    monkeypatch.setattr(threads, "_warned", False)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_are_set_before_the_run_starts(tmp_path, monkeypatch):
    seen = []

    def start(*args):
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(pipeline, "_start", start)
    torch.set_num_threads(1)
    with pytest.raises(Stop):
        pipeline.train(CAIConfig(output_dir=str(tmp_path / "run"), threads=2))
    assert seen == [2]


@pytest.mark.parametrize(("top", "own", "expected"), [(2, 0, 2), (2, 1, 1), (0, 0, 0)])
def test_pretrain_inherits_the_top_level_threads(tmp_path, monkeypatch, top, own, expected):
    given = []

    def train_lm(config, **kwargs):
        given.append(config.threads)
        raise Stop

    monkeypatch.setattr(mie.recipes.lm, "train", train_lm)
    config = CAIConfig(output_dir=str(tmp_path / "run"), base_model="", threads=top)
    config.pretrain.threads = own
    with pytest.raises(Stop):
        pipeline._base(config, tmp_path / "run", resume=False, quiet=True)
    assert given == [expected]
