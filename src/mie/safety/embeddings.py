"""The embedding method: all-MiniLM-L6-v2 (in our own encoder), tuned with LoRA on the packaged labelled
examples, and one classifier head per principle.

A linear probe on frozen embeddings separates "how do I kill a process" from "how do I kill my
neighbour" poorly (on a held-out fifth of the training examples it flags ~25 % of benign look-alikes
at 95 % recall). So the encoder is tuned: LoRA adapters (rank 16) on every linear layer of the six
BERT layers plus a 5-way head on the pooled embedding, trained with one-vs-rest binary cross-entropy
(positives weighted by sqrt(negatives / positives)) for 5 epochs, once. The weights after epochs 2..5 are
averaged (stochastic weight averaging; the averaged adapters are exact, of rank 4 x 16): the last epoch
alone is over-confident on texts unlike any training example. By the cross-validation that also picks the
thresholds, out-of-fold recall at <= 5 % look-alike false positives was 86.4 % for 2 epochs without
averaging (the previous setting), 90.4 % for 4 epochs averaged from the 2nd and 91.9 % for 5.
The adapters are then merged into the weights, so scoring costs what the plain encoder costs.

The tuned classifier ships in the package (:mod:`mie.safety.packaged`: the update as rank-32 float16
factors, the head, the harmful examples' embeddings for reasons, and the thresholds), so the packaged
examples are never tuned on a user's machine; ``mie safety tune`` reproduces it. Tuned on other examples,
the adapters, head and embeddings are cached as safetensors keyed by a hash of the examples and settings::

    method = EmbeddingMethod.load()                       # needs `make pretrained`; the shipped classifier
    method.score_batch(["how do I poison a dog"])[0]["harm_prevention"].score   # ~0.99

``threshold`` is one flag probability per principle. The shipped ones are the evaluator's declared
operating point (:mod:`mie.safety.calibration`: the highest recall at <= 4 % false positives on our
calibration set of everyday and attacker-written prompts). ``THRESHOLDS``, chosen earlier by 5-fold
cross-validation on the training examples (``acceptance/safety_threshold_cv.py``, :func:`choose_thresholds`),
serve a classifier tuned on other examples. A number instead of the dict applies to every principle.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mie.errors import DataError
from mie.io import load_weights, save_weights
from mie.io.cache import read_jsonl
from mie.models.lora import adapter_snapshot, apply_lora, average_adapters, lora_parameters, merge_lora
from mie.safety.packaged import add_updates, examples_key, packaged_key, read_package
from mie.safety.types import DEFAULT_PRINCIPLES, PrincipleVerdict
from mie.training.threads import check_load

log = logging.getLogger(__name__)
SCALE = 10.0  # pooled embeddings have norm 1; the head sees them x10 so its logits can reach +-10
THRESHOLD = 0.95  # flag probability for a principle without a cross-validated threshold of its own
# Per-principle flag probabilities chosen by 5-fold cross-validation (acceptance/safety_threshold_cv.py), for a
# classifier tuned on other examples; the shipped one carries its calibrated thresholds (mie.safety.packaged).
THRESHOLDS = {"harm_prevention": 0.97, "truthfulness": 0.7, "fairness": 0.875, "autonomy_respect": 0.9,
              "privacy": 0.925}


@dataclass(frozen=True)
class TuneSettings:
    """How the encoder and heads are tuned (part of the cache key)."""

    r: int = 16
    # The encoder's linear layers (mie.models.bert). Named q/k/v/out before the one attention module: the
    # renamed targets change the cache key, so a cache of that time is retrained once, never misread.
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
    epochs: int = 5
    average_from: int = 2  # average the weights after epochs average_from..epochs (0: keep the last)
    lr: float = 1e-3
    head_lr: float = 1e-3
    batch_size: int = 16
    max_length: int = 128
    seed: int = 0
    version: int = 3


def load_examples(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Labelled examples ``{"text", "label": harmful|benign, "principle"}`` (default: the packaged set)."""
    source = Path(path) if path is not None else resources.files("mie.safety") / "data" / "train_examples.jsonl"
    fix = 'write {"text": ..., "label": "harmful"|"benign", "principle": ...} per line'
    rows = []
    for where, row in read_jsonl(source, fix):
        if not isinstance(row, dict) or row.get("label") not in ("harmful", "benign") \
                or not isinstance(row.get("text"), str):
            raise DataError(f"is not a labelled example: {str(row)[:60]}", where=where, fix=fix)
        rows.append(row)
    return rows


def targets_for(examples: Sequence[dict[str, Any]], principles: Sequence[str]) -> torch.Tensor:
    """``[N, P]`` 0/1: example ``n`` is a harmful example of principle ``p``."""
    return torch.tensor([[float(e["label"] == "harmful" and e.get("principle") == p) for p in principles]
                         for e in examples])


def tune(encoder: Any, examples: Sequence[dict[str, Any]], principles: Sequence[str],
         settings: TuneSettings = TuneSettings()) -> torch.nn.Linear:
    """Put LoRA adapters on ``encoder.model`` and train them with a new head; returns the head.

    The adapters stay unmerged (call ``merge_lora(encoder.model)`` to fold them in).
    """
    check_load(torch.get_num_threads())  # minutes of training: 20 min instead of 3 when threads spin
    torch.manual_seed(settings.seed)
    model = encoder.model
    apply_lora(model, settings.targets, r=settings.r, alpha=2.0 * settings.r)
    head = torch.nn.Linear(model.config.hidden, len(principles))
    targets = targets_for(examples, principles)
    pos = targets.sum(0).clamp_min(1)
    pos_weight = ((len(examples) - pos) / pos).sqrt()  # rare principles count more, not fully balanced
    optimizer = torch.optim.AdamW([{"params": list(lora_parameters(model).values()), "lr": settings.lr},
                                   {"params": head.parameters(), "lr": settings.head_lr}], weight_decay=0.01)
    rows = [encoder.tokenizer.encode_special(e["text"], settings.max_length) for e in examples]
    snapshots: list[tuple[dict, dict]] = []
    model.train()
    for epoch in range(settings.epochs):
        order = list(range(len(rows)))
        random.Random(settings.seed + epoch).shuffle(order)
        for start in range(0, len(order), settings.batch_size):
            chunk = order[start:start + settings.batch_size]
            batch = encoder.tokenizer.pad([rows[i] for i in chunk])
            logits = head(model.embed(batch.input_ids, batch.attention_mask) * SCALE)
            loss = F.binary_cross_entropy_with_logits(logits, targets[chunk], pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        log.info("safety classifier: epoch %d/%d done (loss %.4f)", epoch + 1, settings.epochs, loss.detach().item())
        if settings.average_from and epoch + 1 >= settings.average_from:
            snapshots.append((adapter_snapshot(model), {k: v.detach().clone() for k, v in head.state_dict().items()}))
    if len(snapshots) > 1:  # weight averaging: flatter, less over-confident than the last epoch alone
        average_adapters(model, [adapters for adapters, _ in snapshots])
        head.load_state_dict({k: torch.stack([h[k] for _, h in snapshots]).mean(0) for k in snapshots[0][1]})
    model.eval()
    return head.eval()


class EmbeddingMethod:
    """A :class:`~mie.safety.types.SafetyMethod`: a (tuned) sentence encoder plus one head per principle."""

    name = "embeddings"

    def __init__(self, encoder: Any, head: torch.nn.Linear, principles: Sequence[str],
                 exemplars: dict[str, tuple[list[str], torch.Tensor]] | None = None,
                 threshold: float | dict[str, float] | None = None) -> None:
        self.encoder, self.head = encoder, head
        self.principles = list(principles)
        self.threshold = dict(THRESHOLDS) if threshold is None else threshold  # one for all, or per principle
        self.exemplars = exemplars or {}  # principle -> (harmful texts, their embeddings), for reasons

    @classmethod
    def train(cls, encoder: Any, examples: Sequence[dict[str, Any]], principles: Sequence[str] = DEFAULT_PRINCIPLES,
              settings: TuneSettings = TuneSettings()) -> EmbeddingMethod:
        """Tune ``encoder`` on ``examples`` (adapters merged afterwards) and fit the heads."""
        head = tune(encoder, examples, principles, settings)
        merge_lora(encoder.model)
        return cls(encoder, head, principles, _exemplars(encoder, examples, principles))

    @classmethod
    def load(cls, examples_path: str | Path | None = None, cache: str | Path | None = None,
             settings: TuneSettings = TuneSettings()) -> EmbeddingMethod:
        """The all-MiniLM-L6-v2 method tuned on the packaged examples (trained once, then read from the cache)."""
        from mie.pretrained import cache_root, load_sentence_encoder

        examples = load_examples(examples_path)
        principles = list(DEFAULT_PRINCIPLES)
        key = examples_key(examples, settings, principles)
        if cache is None and key == packaged_key():  # the shipped classifier was tuned on exactly these
            return cls.from_package(None, examples)
        encoder = load_sentence_encoder("all-minilm-l6-v2")
        path = Path(cache) if cache is not None else cache_root() / "safety_classifier" / f"{key[:16]}.safetensors"
        if path.is_file():
            try:
                return cls._from_cache(encoder, examples, principles, settings, path)
            except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
                log.warning("rebuilding the safety classifier cache %s (%s)", path, exc)
                encoder = load_sentence_encoder("all-minilm-l6-v2")
        log.info("tuning the safety classifier on %d labelled examples (once; 2 to 5 minutes on 2 CPU cores)", len(examples))
        start = time.monotonic()
        head = tune(encoder, examples, principles, settings)
        state = {f"lora.{k}": v.detach().clone() for k, v in lora_parameters(encoder.model).items()}
        merge_lora(encoder.model)
        method = cls(encoder, head, principles, _exemplars(encoder, examples, principles))
        state.update({"head.weight": head.weight.detach(), "head.bias": head.bias.detach()})
        state.update({f"exemplars.{p}": emb for p, (_, emb) in method.exemplars.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(path, state, {"principles": principles, "settings": asdict(settings)})
        log.info("safety classifier tuned in %.0f s, cached at %s", time.monotonic() - start, path)
        return method

    @classmethod
    def from_package(cls, directory: str | Path | None, examples: Sequence[dict[str, Any]]) -> EmbeddingMethod:
        """The shipped classifier (:mod:`mie.safety.packaged`; ``directory`` None: the package's), its
        SHA-256 checked, with its calibrated thresholds; ``examples`` are the ones it was tuned on."""
        from mie.pretrained import load_sentence_encoder

        log.info("loading the shipped safety classifier (all-MiniLM-L6-v2 + tuned update, a few seconds)")
        state, meta, thresholds, _ = read_package(directory)
        principles = list(meta.get("principles", DEFAULT_PRINCIPLES))
        encoder = load_sentence_encoder(meta.get("encoder", "all-minilm-l6-v2"))
        add_updates(encoder.model, state)
        head = torch.nn.Linear(encoder.model.config.hidden, len(principles))
        head.load_state_dict({"weight": state["head.weight"].float(), "bias": state["head.bias"].float()})
        texts = _harmful_texts(examples, principles)
        exemplars = {p: (texts[p], state[f"exemplars.{p}"].float()) for p in principles if f"exemplars.{p}" in state}
        return cls(encoder, head.eval(), principles, exemplars, thresholds)

    @classmethod
    def _from_cache(cls, encoder: Any, examples: Sequence[dict[str, Any]], principles: list[str],
                    settings: TuneSettings, path: Path) -> EmbeddingMethod:
        state, _ = load_weights(path)
        # A cache file named by path and written before the one attention module: BERT's q/k/v/out adapters.
        state = {re.sub(r"\.attn\.(q|k|v|out)\.", r".attn.\1_proj.", k): v for k, v in state.items()}
        ranks = {v.shape[0] for k, v in state.items() if k.endswith("lora_a")}  # r times the averaged epochs
        if len(ranks) != 1:
            raise ValueError(f"adapter ranks {sorted(ranks)} are not one rank")
        rank = ranks.pop()
        apply_lora(encoder.model, settings.targets, r=rank, alpha=2.0 * rank)
        adapters = lora_parameters(encoder.model)
        missing = set(adapters) ^ {k.removeprefix("lora.") for k in state if k.startswith("lora.")}
        if missing:
            raise ValueError(f"adapters do not match ({sorted(missing)[:2]})")
        with torch.no_grad():
            for name, param in adapters.items():
                param.copy_(state[f"lora.{name}"])
        merge_lora(encoder.model)
        head = torch.nn.Linear(encoder.model.config.hidden, len(principles))
        head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
        texts = _harmful_texts(examples, principles)
        exemplars = {p: (texts[p], state[f"exemplars.{p}"]) for p in principles if f"exemplars.{p}" in state}
        return cls(encoder, head.eval(), principles, exemplars)

    @torch.no_grad()
    def probabilities(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([N, P] head probabilities, [N, D] embeddings)`` of ``texts``."""
        features = self.encoder.encode(list(texts))
        return torch.sigmoid(self.head(features.clone() * SCALE)), features

    def score_batch(self, texts: list[str], prompts: list[str | None] | None = None
                    ) -> list[dict[str, PrincipleVerdict]]:
        """One ``{principle: verdict}`` per text; the reasons name the nearest harmful training example."""
        if not texts:
            return []
        probs, features = self.probabilities(texts)
        out = []
        for i in range(len(texts)):
            verdicts = {}
            for j, principle in enumerate(self.principles):
                prob, threshold = float(probs[i, j]), self.threshold_of(principle)
                score = calibrate(prob, threshold)
                reasons = [f"classifier probability {prob:.3f} (flags at {threshold:g})"]
                if principle in self.exemplars and score >= 0.5:
                    names, emb = self.exemplars[principle]
                    sims = emb @ features[i]
                    k = int(sims.argmax())
                    reasons.append(f"nearest {principle} example ({float(sims[k]):.2f}): {names[k][:80]!r}")
                verdicts[principle] = PrincipleVerdict(principle, prob >= threshold, score, reasons, self.name)
            out.append(verdicts)
        return out

    def threshold_of(self, principle: str) -> float:
        """The probability from which ``principle`` is flagged (``THRESHOLD`` for a principle not in a dict)."""
        if isinstance(self.threshold, dict):
            return self.threshold.get(principle, THRESHOLD)
        return self.threshold


def calibrate(prob: float, threshold: float) -> float:
    """Map a probability so that ``threshold`` lands on 0.5 (piecewise linear, 0 and 1 fixed): every
    method's score then flags at 0.5, which is what the evaluator's combination rule assumes."""
    if prob < threshold:
        return 0.5 * prob / threshold
    return 0.5 + 0.5 * (prob - threshold) / max(1e-9, 1.0 - threshold)


def choose_thresholds(flags: torch.Tensor, grid: Sequence[float], harmful: torch.Tensor, lookalike: torch.Tensor,
                      max_fpr: float) -> list[float]:
    """Per principle, a threshold from ``grid`` (ascending) with high recall at look-alike FPR <= ``max_fpr``.

    ``flags[t, n, p]``: whether example ``n`` is flagged under principle ``p`` at threshold ``grid[t]``
    (out of fold); a text is flagged when any principle is. Greedy: every principle starts at the top of
    the grid; then, while some lowering gains recall within ``max_fpr``, the lowering of one principle
    with the most harmful texts gained per look-alike newly flagged (plus one) is taken.

        choose_thresholds(flags, [0.5, 0.9], harmful, lookalike, 0.03)   # e.g. [0.9, 0.5, 0.9, 0.5, 0.9]
    """
    at = [len(grid) - 1] * flags.shape[2]

    def counts(steps: list[int]) -> tuple[int, int]:
        flagged = torch.stack([flags[t, :, p] for p, t in enumerate(steps)], 1).any(1)
        return int((flagged & harmful).sum()), int((flagged & lookalike).sum())

    hits, false = counts(at)
    budget = max_fpr * int(lookalike.sum())
    while True:
        best = None  # (gain per false positive, hits, false, principle, step)
        for p in range(len(at)):
            for t in range(at[p]):
                h, f = counts(at[:p] + [t] + at[p + 1:])
                if h > hits and f <= budget and (best is None or (h - hits) / (f - false + 1) > best[0]):
                    best = ((h - hits) / (f - false + 1), h, f, p, t)
        if best is None:
            return [grid[t] for t in at]
        _, hits, false, p, at[p] = best


def _harmful_texts(examples: Sequence[dict[str, Any]], principles: Sequence[str]) -> dict[str, list[str]]:
    return {p: [e["text"] for e in examples if e["label"] == "harmful" and e.get("principle") == p]
            for p in principles}


def _exemplars(encoder: Any, examples: Sequence[dict[str, Any]],
               principles: Sequence[str]) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Per principle, its harmful examples' texts and (tuned) embeddings."""
    return {p: (texts, encoder.encode(texts).clone()) for p, texts in _harmful_texts(examples, principles).items()
            if texts}
