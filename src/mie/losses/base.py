"""What every loss shares: input validation, fp32 compute, a logit scale, detached metrics for logging,
the named inputs it consumes, and a hook after each optimizer step.

Convention: after each forward a loss sets ``self.last_metrics: dict[str, float]`` holding its component
terms and diagnostics (detached Python floats), e.g. ``{"loss": 2.1, "accuracy": 0.4, ...}``.

Diagnostics cost host synchronisations (``float(tensor)``) and extra compute. They are a setting of the
loss: a task sets ``loss.diagnostics = task.logging_step``, so they are off on the steps the trainer does
not log. Then no loss reads a value back from the device, value checks that need the data (finiteness)
are skipped and ``last_metrics`` is ``{}``. A loss whose ``diagnostics`` is None (the default) follows the
enclosing ``with diagnostics(False): ...`` block of its caller (standalone use), and is on outside one,
so standalone use behaves as documented. The setting holds for the loss's forward only, and for the
losses it is built from; it is kept in a context variable, never in a process-wide global.

A task feeds any loss from one mapping of named inputs (``INPUT_KINDS``) with
``loss.forward_context(context)``: each loss declares in ``consumes`` which forward parameter takes
which input, so a task can tell before training whether it can feed a loss (``required_inputs``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Diagnostics never build a B x B matrix larger than this many rows at once (chunked losses stay linear).
_DIAG_ROWS = 1024
# Uniformity is quadratic in B; it is estimated on at most this many rows.
_UNIFORMITY_ROWS = 512


#: The named inputs a task may offer a loss (``LossBase.consumes`` maps forward parameters to these).
INPUT_KINDS: dict[str, str] = {
    "image_embeds": "first embedding batch [B, D] (images; one view)",
    "text_embeds": "second embedding batch [B, D], paired row by row (captions; the other view)",
    "logit_scale": "the model's learnable 1 / temperature (a positive scalar)",
    "match_ids": "[B] integer ids; equal ids mark the same image, so they are not negatives",
    "negative_text_embeds": "[N, D] embeddings of hard negative captions (word swaps): extra negatives only",
    "tag_targets": "[B, T] 0/1: which of data.caption_tags the image's captions use",
    "image_token_embeds": "[B, N, D] the image tower's patch tokens projected into the embedding space",
    "tag_text_embeds": "[T, D] the text tower's embeddings of data.caption_tags (the tags as texts)",
    "labels": "[B] integer class labels",
    "features": "the current model's features [..., D]",
    "reference_features": "features of the same inputs from a frozen reference model, same shape",
    "key_inputs": "raw inputs a momentum key encoder encodes (e.g. token ids)",
    "logits": "token or class logits [..., V]",
    "targets": "integer targets of the logits [...]",
}

# Whether the loss running now computes diagnostics: per thread and context, set by the running loss's
# own setting or its caller's ``diagnostics`` block.
_DIAGNOSTICS: contextvars.ContextVar[bool] = contextvars.ContextVar("mie_loss_diagnostics", default=True)


def diagnostics_enabled() -> bool:
    """Whether losses compute diagnostics and value checks now (see the module docstring)."""
    return _DIAGNOSTICS.get()


@contextlib.contextmanager
def diagnostics(enabled: bool = True) -> Iterator[None]:
    """Turn loss diagnostics on or off inside the block (for losses whose own ``diagnostics`` is None);
    the previous state comes back after it."""
    token = _DIAGNOSTICS.set(bool(enabled))
    try:
        yield
    finally:
        _DIAGNOSTICS.reset(token)


def to_compute_dtype(x: Tensor) -> Tensor:
    """Half-precision inputs are upcast to fp32 so exp/log stay finite; fp32/fp64 pass through."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_tensor(x: object, name: str, ndim: int | None = 2, min_batch: int = 1) -> Tensor:
    """Validate one input (tensor, rank, batch size, finite) and return it in the compute dtype."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.shape[0] < min_batch:
        raise ValueError(
            f"{name} has batch size {x.shape[0] if x.dim() else 0}; this loss needs at least {min_batch} rows"
        )
    if diagnostics_enabled() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values; check the model outputs / learning rate")
    return to_compute_dtype(x)


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise a clear ValueError when two paired inputs differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_ids(ids: object, batch: int, name: str = "match_ids") -> Tensor:
    """Validate a 1-D integer id/label tensor of length ``batch`` (entries sharing an id are positives)."""
    if not isinstance(ids, Tensor):
        raise ValueError(f"{name} must be a 1-D integer torch.Tensor, got {type(ids).__name__}")
    if ids.dim() != 1 or ids.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"{name} must hold integers, got dtype {ids.dtype}")
    return ids.long()


def as_scalar(value: object, name: str, device: torch.device | str | None = None) -> Tensor:
    """``value`` (a tensor from the model or a Python number) as a 0-dim floating tensor on ``device``.

    A Python number is written straight into a new device tensor (a fill, not a copy from the host,
    which would wait for the device); a tensor keeps its device and graph.
    """
    if isinstance(value, Tensor):
        t = value
    elif isinstance(value, numbers.Real):
        return torch.full((), float(value), device=device)
    else:
        t = torch.as_tensor(value)
    if t.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(t.shape)}")
    t = to_compute_dtype(t.reshape(()) if t.is_floating_point() else t.float().reshape(()))
    return t if device is None else t.to(device)


def check_scale(scale: object, name: str = "logit_scale", device: torch.device | str | None = None) -> Tensor:
    """Validate a positive finite scalar (a tensor from the model or a float) and return it as a tensor
    (on ``device`` when given). The value check needs the data, so it runs only with diagnostics on."""
    t = as_scalar(scale, name, device)
    if diagnostics_enabled() and (not torch.isfinite(t) or t <= 0):
        raise ValueError(f"{name} must be a positive finite number, got {float(t)}")
    return t


def check_positive(value: float, name: str) -> float:
    """Constructor helper: raise ValueError unless ``value`` > 0."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


class LossBase(nn.Module):
    """Base of every loss in ``mie.losses``: holds ``last_metrics``, the minimum batch it needs, and
    ``consumes``: forward parameter -> the ``INPUT_KINDS`` key a task passes there."""

    min_batch: int = 1
    consumes: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.last_metrics: dict[str, float] = {}
        #: compute diagnostics and value checks in forward: True, False, or None = as the caller's
        #: ``diagnostics`` block says (on outside one). A task sets it to its ``logging_step``.
        self.diagnostics: bool | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``forward`` under this loss's :attr:`diagnostics` setting."""
        with self.own_diagnostics():
            return super().__call__(*args, **kwargs)

    def own_diagnostics(self) -> contextlib.AbstractContextManager[None]:
        """The block in which this loss runs: under its :attr:`diagnostics` setting, or its caller's when
        None. ``__call__`` and every ``forward_context`` enter it."""
        setting = self.__dict__.get("diagnostics")  # absent on a loss unpickled from before the setting
        return contextlib.nullcontext() if setting is None else diagnostics(setting)

    def check_pair(self, a: Tensor, b: Tensor, name_a: str = "a", name_b: str = "b") -> tuple[Tensor, Tensor]:
        """Validate two paired 2-D embedding batches of the same shape; return them in the compute dtype."""
        a = check_tensor(a, name_a, ndim=2, min_batch=self.min_batch)
        b = check_tensor(b, name_b, ndim=2, min_batch=self.min_batch)
        check_same_shape(a, b, name_a, name_b)
        return a, b

    def required_inputs(self) -> set[str]:
        """The ``INPUT_KINDS`` keys this loss cannot run without (forward parameters with no default)."""
        return set(_required_inputs(type(self)))

    def accepted_inputs(self) -> set[str]:
        """Every ``INPUT_KINDS`` key this loss takes when offered."""
        return set(self.consumes.values())

    def check_context(self, context: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming this loss, the required inputs ``context`` lacks (absent or None)
        and the ones it has; do nothing when it has them all."""
        missing = sorted(k for k in self.required_inputs() if context.get(k) is None)
        if missing:
            name = getattr(self, "registered_name", type(self).__name__)
            given = sorted(k for k, v in context.items() if v is not None)
            raise ValueError(
                f"loss {name!r} needs {', '.join(missing)}; the task gave {', '.join(given) or 'nothing'}"
            )

    def forward_context(self, context: Mapping[str, Any]) -> Tensor:
        """The loss, called with the inputs it ``consumes`` taken from ``context`` (absent or None
        ones are left out); a missing required input is a ValueError (:meth:`check_context`)."""
        self.check_context(context)
        inputs = {param: context[key] for param, key in self.consumes.items() if context.get(key) is not None}
        return self(**inputs)  # __call__ enters own_diagnostics

    def sub_losses(self) -> Iterator[LossBase]:
        """The losses this one is built from (its nearest ``LossBase`` descendants, in order)."""
        stack = list(self.children())[::-1]
        while stack:
            module = stack.pop()
            if isinstance(module, LossBase):
                yield module
            else:
                stack.extend(list(module.children())[::-1])

    def after_optimizer_step(self) -> None:
        """Update the loss's own state (queues, momentum encoders, step counters); a task calls it once
        after every optimizer step (standalone: right after ``optimizer.step()``), however many
        micro-batches the step accumulated. ``forward`` never changes state. By default it is passed
        on to :meth:`sub_losses`, so a stateless loss does nothing."""
        for loss in self.sub_losses():
            loss.after_optimizer_step()

    def pair_stats(self, a: Tensor, b: Tensor, ids: Tensor | None = None) -> dict[str, float]:
        """:func:`pair_diagnostics` when diagnostics are on, else nothing (no host synchronisation)."""
        return pair_diagnostics(a, b, ids) if diagnostics_enabled() else {}

    def record(self, **values: Tensor | float) -> None:
        """Store detached float metrics for logging (overwrites the previous step's); with diagnostics
        off it stores nothing (``last_metrics == {}``), so no value is read back from the device."""
        if not diagnostics_enabled():
            self.last_metrics = {}
            return
        self.last_metrics = {
            k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in values.items()
        }


@functools.cache
def _required_inputs(cls: type[LossBase]) -> frozenset[str]:
    """What ``LossBase.required_inputs`` returns for ``cls`` (read from its forward's signature once,
    not on every call of the training hot path)."""
    params = inspect.signature(cls.forward).parameters
    return frozenset(
        key for name, key in cls.consumes.items() if name in params and params[name].default is params[name].empty
    )


class LogitScale(nn.Module):
    """Multiplier ``1 / temperature`` for similarity logits, fixed (a buffer) or learnable (a parameter).

    Stored as ``log(1 / temperature)`` so a learnable scale stays positive; clamped at ``max_scale``
    as in CLIP so training cannot blow the logits up.
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = False, max_scale: float = 100.0) -> None:
        super().__init__()
        check_positive(temperature, "temperature")
        self.max_scale = check_positive(max_scale, "max_logit_scale")
        value = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> Tensor:
        """The current scale, ``min(exp(log_scale), max_scale)``."""
        return self.log_scale.exp().clamp(max=self.max_scale)


@torch.no_grad()
def pair_diagnostics(a: Tensor, b: Tensor, ids: Tensor | None = None) -> dict[str, float]:
    """Alignment/uniformity (Wang & Isola 2020), mean positive/negative cosine and a->b top-1 accuracy.

    ``a[i]`` and ``b[i]`` are the positive pairs; with ``ids`` a retrieval counts as correct when it hits
    any ``b[j]`` with the same id. Everything is O(B) memory except uniformity, estimated on the first
    512 rows.
    """
    a = F.normalize(a.detach().float(), dim=-1)
    b = F.normalize(b.detach().float(), dim=-1)
    n = a.shape[0]
    diag = (a * b).sum(-1)
    pos = diag.mean()
    # Sum over all i != j of a_i . b_j without materialising the matrix.
    neg = ((a.sum(0) @ b.sum(0)) - diag.sum()) / max(n * (n - 1), 1)
    alignment = (a - b).pow(2).sum(-1).mean()
    sub = a[:_UNIFORMITY_ROWS]
    if sub.shape[0] > 1:
        sq = torch.cdist(sub, sub).pow(2)
        off = ~torch.eye(sub.shape[0], dtype=torch.bool, device=sub.device)
        uniformity = float(torch.log(torch.exp(-2 * sq[off]).mean()))
    else:
        uniformity = 0.0
    correct = 0
    for start in range(0, n, _DIAG_ROWS):
        best = (a[start : start + _DIAG_ROWS] @ b.T).argmax(dim=1)
        rows = torch.arange(start, start + best.shape[0], device=a.device)
        correct += int((ids[best] == ids[rows]).sum()) if ids is not None else int((best == rows).sum())
    return {
        "alignment": float(alignment),
        "uniformity": uniformity,
        "pos_sim": float(pos),
        "neg_sim": float(neg),
        "accuracy": correct / n,
    }
