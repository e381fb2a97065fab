"""The trainer's speed levers: ``optimizer.implementation`` (fused / foreach AdamW), ``compile:`` (each
repeated block through torch.compile, eager again after ``fit``) and ``CausalLMConfig.fused_qkv``."""

import shutil

import pytest
import torch
from torch import nn

from mie.config import config_from_dict
from mie.errors import ConfigError
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.training import Callback, OptimizerConfig, TrainerConfig, create_optimizer
from mie.training import compile as compile_mod
from mie.training.compile import compile_blocks, release_blocks, repeated_blocks
from mie.training.optim import fused_available

FUSED_CPU = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def _steps(implementation: str, steps: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 2))
    opt = create_optimizer(model, OptimizerConfig(lr=1e-2, implementation=implementation))
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.skipif(not FUSED_CPU, reason="the fused CPU AdamW kernel arrived in torch 2.4")
def test_auto_picks_the_fused_kernel_on_the_cpu_and_it_matches_foreach():
    model = nn.Linear(3, 3)
    assert create_optimizer(model, OptimizerConfig()).defaults["fused"] is True  # auto
    assert not create_optimizer(model, OptimizerConfig(implementation="foreach")).defaults["fused"]
    fused, foreach = _steps("fused"), _steps("foreach")
    assert not torch.equal(fused, _steps("foreach", steps=2))  # the steps really moved the weights
    torch.testing.assert_close(fused, foreach, rtol=1e-5, atol=1e-6)


def test_fused_where_no_kernel_exists_is_refused_in_one_line():
    model = nn.Linear(3, 3, device="meta")
    assert not fused_available(list(model.parameters()))
    assert not create_optimizer(model, OptimizerConfig()).defaults["fused"]  # auto falls back to foreach
    with pytest.raises(ConfigError) as err:
        create_optimizer(model, OptimizerConfig(implementation="fused"))
    assert str(err.value) == ("optimizer.implementation: fused: the fused AdamW kernel needs float parameters "
                              "on the CPU or CUDA — use auto or foreach")


def test_config_keys_are_checked():
    cfg = config_from_dict(TrainerConfig, {"compile": True, "optimizer": {"implementation": "foreach"}})
    assert cfg.compile is True and cfg.optimizer.implementation == "foreach"
    assert TrainerConfig().compile is False and OptimizerConfig().implementation == "auto"
    with pytest.raises(ConfigError, match="must be one of auto | fused | foreach"):
        config_from_dict(TrainerConfig, {"optimizer": {"implementation": "fast"}})


def _lm(fused_qkv: bool = False) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(vocab_size=32, dim=16, n_layers=2, n_heads=2, mlp="gelu", norm="layernorm",
                                   positions="learned", max_seq_len=8, bias=True, fused_qkv=fused_qkv))


def test_repeated_blocks_are_the_members_of_the_outermost_module_lists():
    model = _lm()
    assert repeated_blocks(model) == list(model.layers)
    nested = nn.Sequential(nn.ModuleList([nn.Sequential(nn.ModuleList([nn.Linear(2, 2)]))]), nn.Linear(2, 2))
    assert repeated_blocks(nested) == [nested[0][0]]  # the inner list is left to its block
    assert repeated_blocks(nn.Linear(2, 2)) == []


def test_compile_blocks_wraps_each_block_once_and_release_restores_eager(monkeypatch):
    calls = []
    monkeypatch.setattr(compile_mod.torch, "compile", lambda fn: calls.append(fn) or fn)
    model = _lm()
    names = list(model.state_dict())
    blocks = compile_blocks(model)
    compile_blocks(model)  # a second call compiles nothing again
    assert len(calls) == 2 and all("forward" in vars(b) for b in model.layers)
    assert list(model.state_dict()) == names  # checkpoints unchanged
    release_blocks(blocks)
    assert not any("forward" in vars(b) for b in model.layers)


def test_compile_without_a_c_compiler_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError) as err:
        compile_blocks(_lm())
    assert str(err.value) == ("compile: true: inductor needs a C compiler on the CPU and none was found — "
                              "install gcc (apt-get install gcc) or set compile: false")


def test_the_trainer_compiles_during_fit_only(toys, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(compile_mod.torch, "compile", lambda fn: calls.append(fn) or fn)
    model = nn.Sequential(nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)]), nn.Linear(4, 1))
    model.forward = lambda x: model[1](model[0][1](model[0][0](x)))
    seen = []
    trainer = toys.trainer(model, toys.config(tmp_path, compile=True, epochs=1), toys.loader(),
                           callbacks=[_Probe(seen, model)])
    assert not calls  # nothing compiled before fit
    trainer.fit()
    assert len(calls) == 2 and seen == [True]  # compiled while training
    assert not any("forward" in vars(b) for b in model[0])  # eager again afterwards


class _Probe(Callback):
    """A callback noting, at the first step, whether the blocks were compiled."""

    def __init__(self, seen, model):
        self.seen, self.model = seen, model

    def on_step_end(self, trainer, step, metrics):
        if step == 1:
            self.seen.append(all("forward" in vars(b) for b in self.model[0]))


def test_fused_qkv_loads_a_separate_checkpoint_and_computes_the_same_logits():
    separate, fused = _lm(), _lm(fused_qkv=True)
    assert hasattr(fused.layers[0].attn, "qkv_proj") and not hasattr(fused.layers[0].attn, "q_proj")
    fused.load_state_dict(separate.state_dict())  # strict: the attention's pre-hook joins q/k/v
    ids = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(fused(ids), separate(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_blocks_train_like_eager():
    eager, compiled = _lm(), _lm()
    compile_blocks(compiled)
    ids = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(3))
    for model in (eager, compiled):
        model(ids).logsumexp(-1).mean().backward()
    torch.testing.assert_close(compiled(ids), eager(ids), rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
