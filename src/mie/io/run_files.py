"""The files of a finished run as readers find them: ``config.yaml``, ``tokenizer.json``, a chat model's
``chat_template.jinja`` and ``checkpoints/{best,last}.safetensors``.

The recipes write this layout (``mie.recipes.run_dir``); library code that loads a run (``mie generate``'s
model, ``mie serve``, a fine-tune's starting point) reads it through these functions, so the layout is
named once and the library never imports the application.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mie.errors import CheckpointError, ConfigError
from mie.io.checkpoint import load_weights
from mie.io.store import CheckpointStore

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # a fine-tuned chat model's template, beside tokenizer.json
CHECKPOINT_CHOICES = ("best", "last")


def run_config_path(run_dir: Path) -> Path:
    """``run_dir/config.yaml``, or a one-line error when ``run_dir`` is not a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the run directory written by `mie train`")
    return path


def checkpoint_to_evaluate(run_dir: Path, which: str = "best") -> Path:
    """The weights a finished run is scored with: ``checkpoints/best.safetensors`` (``last`` when the
    run kept no best), or ``last.safetensors`` itself when ``which="last"``.

    A run with a checkpoint manifest resolves the files through it (checksums verified), so a kill
    while the friendly names were being refreshed cannot pair weights and sidecar of two saves.
    """
    if which not in CHECKPOINT_CHOICES:
        raise ConfigError(f"unknown checkpoint {which!r}", where="--checkpoint",
                          fix=f"choose one of {', '.join(CHECKPOINT_CHOICES)}")
    names = ("best", "last") if which == "best" else ("last",)
    checkpoints = Path(run_dir) / "checkpoints"
    store = CheckpointStore(checkpoints)
    if store.manifest() is not None:
        for name in names:
            path = store.resolve(f"{name}.safetensors")
            if path is not None:
                store.resolve(f"{name}.json")
                return path
    for name in names:
        path = checkpoints / f"{name}.safetensors"
        if path.is_file():
            return path
    wanted = " or ".join(f"checkpoints/{n}.safetensors" for n in names)
    raise CheckpointError(f"no {wanted}", where=run_dir,
                          fix="pass the directory of a finished `mie train` run")


def load_run_weights(model: Any, run_dir: Path, which: str = "best") -> Path:
    """Load the run's ``best`` (or ``last``) weights into ``model`` (built from the run's config.yaml);
    returns the weights file. Another architecture is a one-line :class:`CheckpointError`."""
    weights = checkpoint_to_evaluate(run_dir, which)
    state, meta = load_weights(weights)
    if meta.get("optimization"):  # a quantized or pruned run: the same module swaps first (mie optimize)
        from mie.optimization.scheme import apply_optimization

        apply_optimization(model, meta["optimization"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"does not fit the model of {Path(run_dir) / CONFIG_FILE} "
                              f"({' '.join(str(exc).split())[:300]})",
                              where=weights, fix="keep the checkpoints and config.yaml of one run together") from None
    return weights
