"""How the embedding classifier's threshold was chosen: 5-fold cross-validation on the packaged training
examples only (the evaluation set in benchmarks/data is never read here).

For each fold the encoder is tuned afresh (LoRA + heads, as ``EmbeddingMethod.train``) on four fifths and
scored on the fifth. The pooled out-of-fold probabilities give recall and false-positive rates at each
threshold, for the embeddings alone and for what ships: rules + embeddings combined by ``CombineRule``
(the rules are fixed, so they need no folds). Printed: the lowest single threshold whose combined
look-alike false-positive rate is <= --max-fpr, and one threshold per principle within the same rate
(``choose_thresholds``): those ship as ``mie.safety.embeddings.THRESHOLDS``. About 20 minutes on 2 idle
CPU cores (``--load`` re-reads saved probabilities instead).

    python acceptance/safety_threshold_cv.py [--folds 5] [--max-fpr 0.05] [--epochs 4] [--average-from 2] [--save probs.pt]
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mie.pretrained import load_sentence_encoder  # noqa: E402
from mie.safety.embeddings import (  # noqa: E402
    SCALE,
    TuneSettings,
    calibrate,
    choose_thresholds,
    load_examples,
    targets_for,
    tune,
)
from mie.safety.evaluator import CombineRule  # noqa: E402
from mie.safety.rules import RuleMethod  # noqa: E402
from mie.safety.types import DEFAULT_PRINCIPLES, PrincipleVerdict  # noqa: E402

THRESHOLDS = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995]


def out_of_fold(examples: list[dict], folds: int, settings: TuneSettings) -> torch.Tensor:
    """``[N, P]`` probabilities, each from the fold's model that did not see the example."""
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    probs = torch.zeros(len(examples), len(DEFAULT_PRINCIPLES))
    for fold in range(folds):
        held = set(order[fold::folds])
        encoder = load_sentence_encoder("all-minilm-l6-v2")
        head = tune(encoder, [examples[i] for i in order if i not in held], DEFAULT_PRINCIPLES, settings)
        idx = sorted(held)
        with torch.no_grad():
            probs[idx] = torch.sigmoid(head(encoder.encode([examples[i]["text"] for i in idx]).clone() * SCALE))
        print(f"fold {fold + 1}/{folds} done", flush=True)
    return probs


def combined_flags(probs: torch.Tensor, rules: list[dict[str, PrincipleVerdict]], threshold: float) -> torch.Tensor:
    """``[N, P]`` whether rules + embeddings (at ``threshold``) flag each principle, as the evaluator would."""
    rule = CombineRule()
    return torch.tensor([[rule.combine(p, {"rules": verdicts[p], "embeddings": PrincipleVerdict(
        p, False, calibrate(float(probs[n, j]), threshold), ["probability"], "embeddings")}).flagged
        for j, p in enumerate(DEFAULT_PRINCIPLES)] for n, verdicts in enumerate(rules)])


def rates(flagged: torch.Tensor, harmful: torch.Tensor, lookalike: torch.Tensor) -> tuple[float, float, float]:
    """Recall, false-positive rate, look-alike false-positive rate."""
    return (float((flagged & harmful).sum() / harmful.sum()), float((flagged & ~harmful).sum() / (~harmful).sum()),
            float((flagged & lookalike).sum() / lookalike.sum()))


def main() -> None:
    """Cross-validate and print the table of thresholds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-fpr", type=float, default=0.05, help="the goal: <= 5%% look-alike FPR")
    parser.add_argument("--epochs", type=int, default=None, help="override TuneSettings.epochs")
    parser.add_argument("--average-from", type=int, default=None, help="override TuneSettings.average_from")
    parser.add_argument("--save", default=None, help="write the out-of-fold probabilities here (torch.save)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a shared machine)")
    parser.add_argument("--load", default=None, help="read them from here instead of tuning")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    examples = load_examples()
    settings = TuneSettings()
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    if args.average_from is not None:
        settings = replace(settings, average_from=args.average_from)
    probs = torch.load(args.load) if args.load else out_of_fold(examples, args.folds, settings)
    if args.save:
        torch.save(probs, args.save)
    harmful = targets_for(examples, DEFAULT_PRINCIPLES).any(1)
    lookalike = torch.tensor([e["label"] == "benign" and not e.get("category", "").startswith("everyday")
                              for e in examples])
    rules = RuleMethod().score_batch([e["text"] for e in examples])
    alone = rates(torch.tensor([any(v.flagged for v in r.values()) for r in rules]), harmful, lookalike)
    print(f"rules alone: recall {alone[0]:.3f}, FPR {alone[1]:.3f}, look-alike FPR {alone[2]:.3f}")
    chosen, per_threshold = None, []
    print("| threshold | embeddings recall | look-alike FPR | combined recall | FPR | look-alike FPR |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for threshold in THRESHOLDS:
        alone = rates((probs >= threshold).any(1), harmful, lookalike)
        per_threshold.append(combined_flags(probs, rules, threshold))
        both = rates(per_threshold[-1].any(1), harmful, lookalike)
        print(f"| {threshold:.3f} | {alone[0]:.3f} | {alone[2]:.3f} | {both[0]:.3f} | {both[1]:.3f} | {both[2]:.3f} |")
        if chosen is None and both[2] <= args.max_fpr:
            chosen = threshold
    print(f"lowest threshold with combined look-alike FPR <= {args.max_fpr}: {chosen}")
    flags = torch.stack(per_threshold)  # [T, N, P]
    picked = choose_thresholds(flags, THRESHOLDS, harmful, lookalike, args.max_fpr)
    index = [THRESHOLDS.index(t) for t in picked]
    both = rates(torch.stack([flags[t, :, p] for p, t in enumerate(index)], 1).any(1), harmful, lookalike)
    print(f"per-principle thresholds {dict(zip(DEFAULT_PRINCIPLES, picked, strict=True))}: combined recall "
          f"{both[0]:.3f}, FPR {both[1]:.3f}, look-alike FPR {both[2]:.3f}")


if __name__ == "__main__":
    main()
