"""Integer linear layers that replace ``nn.Linear`` in place: weight-only int8 / int4 with group-wise scales,
and dynamic int8 (int8 weights and activations quantized per batch).

Every layer keeps its integer weights as plain tensor buffers (``qweight``, ``scales``, ``zeros``, ``bias``),
so a quantized model saves to safetensors like any other and loads into a model whose linears were swapped by
:func:`mie.optimization.quantize.apply_scheme`. Kernel-specific layouts (torch's packed int4 tiles, fbgemm's
packed int8 weights) are derived from those buffers on first use and never saved: they depend on the CPU.

Schemes (``w`` a weight row split into groups of ``group_size`` inputs; ``group_size=0`` = one group per row):

* ``int8`` weight-only, symmetric: ``w ~ q * scale`` with ``q`` in ``[-127, 127]``, ``scale = max|w| / 127``.
* ``int4`` weight-only, asymmetric (min/max; fp16 scales and zeros), in the convention of torch's int4 CPU kernel:
  ``w ~ (q - 8) * scale + zero`` with ``q`` in ``[0, 15]``, ``scale = (max - min) / 15``, ``zero = min + 8 * scale``;
  two values per byte (low nibble = even column).
* dynamic int8: per-output-channel symmetric int8 weights; activations quantized per call by fbgemm.

Small batches (generation: a few rows) run through torch's packed kernels ``_weight_int8pack_mm`` /
``_weight_int4pack_mm_for_cpu`` in bfloat16, which read 4x / 8x fewer weight bytes than fp32 (their fp32
variants measured 17-30x slower than a dense fp32 matmul here); larger batches dequantize to fp32 and run
one dense matmul, which is exact with respect to the stored integers.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_ROWS = 16  # at most this many input rows use the packed kernels; more dequantize (a GEMM wins there)
INT4_KERNEL_GROUPS = (32, 64, 128, 256)  # group sizes the int4 CPU kernel accepts


def group_count(in_features: int, group_size: int) -> int:
    """Groups per weight row (``group_size=0``: one per row); ``group_size`` must divide ``in_features``."""
    if group_size == 0:
        return 1
    if group_size < 0 or in_features % group_size:
        raise ValueError(f"group size {group_size} does not divide the {in_features} inputs of the layer")
    return in_features // group_size


def fitting_group_size(in_features: int, group_size: int) -> int:
    """``group_size`` when it divides ``in_features``, else the largest power-of-two half of it that does
    (SmolLM2's 576 inputs take 64 where 128 was asked); 0 (one group per row) when none does."""
    size = group_size
    while size >= 8:
        if in_features % size == 0:
            return size
        size //= 2
    return 0


def quantize_int8(weight: torch.Tensor, group_size: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of ``weight`` ``[N, K]`` -> ``(q int8 [N, K], scales float32 [N, groups])``."""
    n, k = weight.shape
    groups = group_count(k, group_size)
    w = weight.detach().float().reshape(n, groups, -1)  # (N, G, g)
    scales = (w.abs().amax(-1) / 127.0).clamp(min=1e-12)  # (N, G)
    q = torch.round(w / scales[..., None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(n, k), scales


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 of ``weight`` ``[N, K]`` -> ``(q uint8 [N, K] in 0..15, scales [N, G], zeros [N, G])``,
    scales and zeros rounded to fp16."""
    n, k = weight.shape
    groups = group_count(k, group_size)
    w = weight.detach().float().reshape(n, groups, -1)
    low, high = w.amin(-1), w.amax(-1)
    # fp16 scales and zeros (what the layer stores); the integers are chosen against the rounded values
    scales = ((high - low) / 15.0).clamp(min=1e-7).half().float()
    zeros = (low + 8.0 * scales).half().float()
    q = torch.round((w - zeros[..., None]) / scales[..., None] + 8.0).clamp(0, 15).to(torch.uint8)
    return q.reshape(n, k), scales, zeros


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """``[N, K]`` values 0..15 -> ``[N, K/2]`` bytes (even column in the low nibble)."""
    return (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: ``[N, K/2]`` bytes -> ``[N, K]`` values 0..15 (uint8)."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(packed.shape[0], -1)


class WeightOnlyLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as int8 or int4 group-wise (see the module docstring).

    >>> layer = WeightOnlyLinear.from_linear(nn.Linear(64, 32), bits=4, group_size=32)  # doctest: +SKIP
    """

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int = 0, bias: bool = True) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {bits}")
        if bits == 4 and in_features % 2:
            raise ValueError(f"int4 packs two inputs per byte; {in_features} inputs is odd")
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        groups = group_count(in_features, group_size)
        width = in_features if bits == 8 else in_features // 2
        self.register_buffer("qweight", torch.zeros(out_features, width, dtype=torch.int8 if bits == 8 else torch.uint8))
        # int4 keeps its scales and zeros in fp16 (as GGUF's Q4 blocks do): fp32 would add 2 bits per weight at g32
        meta = torch.float16 if bits == 4 else torch.float32
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=meta))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=meta) if bits == 4 else None)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._kernel: tuple[torch.Tensor, ...] | None = None  # the packed-kernel operands, built on first use

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, bits: int, group_size: int = 0
                    ) -> WeightOnlyLinear:
        """Quantize a float ``weight`` ``[out, in]`` (and keep ``bias`` in fp32)."""
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, bits, group_size, bias=bias is not None)
        if bits == 8:
            q, scales = quantize_int8(weight, group_size)
            layer.qweight.copy_(q)
        else:
            q, scales, zeros = quantize_int4(weight, group_size)
            layer.qweight.copy_(pack_nibbles(q))
            layer.zeros.copy_(zeros)
        layer.scales.copy_(scales)
        if bias is not None:
            layer.bias.copy_(bias.detach().float())
        return layer.to(weight.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int = 0) -> WeightOnlyLinear:
        """The quantized counterpart of ``linear``."""
        return cls.from_weight(linear.weight, linear.bias, bits, group_size)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weight, for code that slices a projection's ``.weight`` (a pooled tower's
        last block computes one token's queries from it)."""
        return self.dequantize()

    def dequantize(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The float32 weight ``[out, in]`` the integers stand for (only output rows ``rows`` when given)."""
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        q, scales = pick(self.qweight), pick(self.scales).float()
        n = q.shape[0]
        if self.bits == 8:
            w = q.float().reshape(n, scales.shape[1], -1) * scales[..., None]
        else:
            values = unpack_nibbles(q).float().reshape(n, scales.shape[1], -1)
            w = (values - 8.0) * scales[..., None] + pick(self.zeros).float()[..., None]
        return w.reshape(n, self.in_features)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._kernel = None  # new integers: the packed copy is stale
        super()._load_from_state_dict(*args, **kwargs)

    def _kernel_operands(self) -> tuple[torch.Tensor, ...] | None:
        """The packed kernel's weight operands, or None where no kernel takes this layout."""
        if self._kernel is None:
            self._kernel = ()
            if self.qweight.device.type == "cpu":
                if self.bits == 8 and self.scales.shape[1] == 1 and hasattr(torch.ops.aten, "_weight_int8pack_mm"):
                    self._kernel = (self.qweight, self.scales[:, 0].to(torch.bfloat16))
                elif self.bits == 4 and self.group_size in INT4_KERNEL_GROUPS and self.out_features % 16 == 0 and hasattr(
                        torch.ops.aten, "_weight_int4pack_mm_for_cpu"):  # the kernel packs 16 output rows a tile
                    q = unpack_nibbles(self.qweight).to(torch.int32)
                    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
                    scales_zeros = torch.stack((self.scales.T, self.zeros.T), dim=-1)  # (G, N, 2)
                    self._kernel = (packed, scales_zeros.to(torch.bfloat16).contiguous())
        return self._kernel or None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., in]`` -> ``[..., out]`` in ``x``'s dtype."""
        rows = x.numel() // self.in_features
        operands = self._kernel_operands() if rows <= KERNEL_ROWS and not torch.is_grad_enabled() else None
        if operands is None:
            out = F.linear(x.float(), self.dequantize(), self.bias)
            return out.to(x.dtype)
        flat = x.reshape(rows, self.in_features).to(torch.bfloat16)
        if self.bits == 8:
            out = torch.ops.aten._weight_int8pack_mm(flat, *operands)
        else:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, operands[0], self.group_size, operands[1])
        out = out.float()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, int{self.bits}, "
                f"group_size={self.group_size or 'row'}")


class QuantizedEmbedding(nn.Module):
    """An ``nn.Embedding`` whose table is stored like a :class:`WeightOnlyLinear` weight (one row per token).

    A tied LM head reads the same integers through :class:`TiedQuantizedHead`, so they are stored once.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int, group_size: int = 0) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.table = WeightOnlyLinear(embedding_dim, num_embeddings, bits, group_size, bias=False)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, bits: int, group_size: int = 0) -> QuantizedEmbedding:
        """The quantized counterpart of ``embedding``."""
        layer = cls(embedding.num_embeddings, embedding.embedding_dim, bits, group_size)
        layer.table = WeightOnlyLinear.from_weight(embedding.weight, None, bits, group_size)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized table (a float copy, for code that reads ``.weight``)."""
        return self.table.dequantize()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of the dequantized table for ``ids`` ``[...]`` -> ``[..., dim]``."""
        return self.table.dequantize(ids.reshape(-1)).reshape(*ids.shape, self.embedding_dim)


class TiedQuantizedHead(nn.Module):
    """The LM head of a model with tied embeddings: ``x @ table^T`` over a :class:`QuantizedEmbedding`'s integers.

    It holds no state of its own (the embedding is referenced, not registered), so the integers are saved once.
    """

    def __init__(self, embedding: QuantizedEmbedding) -> None:
        super().__init__()
        self._embedding = [embedding]  # a list hides it from nn.Module's registration

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., vocab]``."""
        return self._embedding[0].table(x)


class DynamicInt8Linear(nn.Module):
    """Dynamic int8: per-channel int8 weights; each call quantizes its activations and runs fbgemm's int8 GEMM
    (VNNI on this CPU), as ``torch.ao.quantization.quantize_dynamic`` does, with the weights kept as buffers."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed: Any = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> DynamicInt8Linear:
        """The dynamic-int8 counterpart of ``linear``."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, scales = quantize_int8(linear.weight, 0)
        layer.qweight.copy_(q)
        layer.scales.copy_(scales[:, 0])
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weight, for code that slices a projection's ``.weight`` (a pooled tower's
        last block computes one token's queries from it)."""
        return self.dequantize()

    def dequantize(self) -> torch.Tensor:
        """The float32 weight the integers stand for."""
        return self.qweight.float() * self.scales[:, None]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._packed = None
        super()._load_from_state_dict(*args, **kwargs)

    def _prepack(self) -> Any:
        if self._packed is None:
            zero_points = torch.zeros(self.out_features, dtype=torch.long)
            with warnings.catch_warnings():  # torch marks quantized tensors deprecated; fbgemm's packing needs one
                warnings.simplefilter("ignore")
                qweight = torch._make_per_channel_quantized_tensor(self.qweight, self.scales.double(), zero_points, 0)
            self._packed = torch.ops.quantized.linear_prepack(qweight, self.bias)
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., in]`` -> ``[..., out]``; fp32 with gradients (QAT-free fine-tuning) takes the dequantized path."""
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32:
            return F.linear(x.float(), self.dequantize(), self.bias).to(x.dtype)
        out = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features), self._prepack(), True)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"in_features={self.in_features}, out_features={self.out_features}, dynamic int8"
