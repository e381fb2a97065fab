"""How the embedding classifier's threshold was chosen: 5-fold cross-validation on the packaged training
examples only (the evaluation set in benchmarks/data is never read here).

For each fold the encoder is tuned afresh (LoRA + heads, as ``EmbeddingMethod.train``) on four fifths and
scored on the fifth; the pooled out-of-fold probabilities give recall and false-positive rates at each
threshold. The chosen threshold is the lowest whose look-alike false-positive rate is <= --max-fpr.
About 4 minutes on 2 CPU cores.

    python acceptance/safety_threshold_cv.py [--folds 5] [--max-fpr 0.03]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mie.pretrained import load_sentence_encoder  # noqa: E402
from mie.safety.embeddings import SCALE, TuneSettings, load_examples, targets_for, tune  # noqa: E402
from mie.safety.types import DEFAULT_PRINCIPLES  # noqa: E402


def main() -> None:
    """Cross-validate and print the table of thresholds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-fpr", type=float, default=0.03)
    args = parser.parse_args()
    torch.set_num_threads(2)
    examples = load_examples()
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    probs = torch.zeros(len(examples), len(DEFAULT_PRINCIPLES))
    for fold in range(args.folds):
        held = set(order[fold::args.folds])
        encoder = load_sentence_encoder("all-minilm-l6-v2")
        head = tune(encoder, [examples[i] for i in order if i not in held], DEFAULT_PRINCIPLES, TuneSettings())
        idx = sorted(held)
        with torch.no_grad():
            probs[idx] = torch.sigmoid(head(encoder.encode([examples[i]["text"] for i in idx]).clone() * SCALE))
        print(f"fold {fold + 1}/{args.folds} done", flush=True)
    harmful = targets_for(examples, DEFAULT_PRINCIPLES).any(1)
    lookalike = torch.tensor([e["label"] == "benign" and not e.get("category", "").startswith("everyday")
                              for e in examples])
    chosen = None
    print("| threshold | recall | FPR | look-alike FPR |\n| --- | --- | --- | --- |")
    for threshold in [x / 20 for x in range(4, 20)]:
        flagged = (probs >= threshold).any(1)
        recall = float((flagged & harmful).sum() / harmful.sum())
        fpr = float((flagged & ~harmful).sum() / (~harmful).sum())
        look = float((flagged & lookalike).sum() / lookalike.sum())
        print(f"| {threshold:.2f} | {recall:.3f} | {fpr:.3f} | {look:.3f} |")
        if chosen is None and look <= args.max_fpr:
            chosen = threshold
    print(f"lowest threshold with look-alike FPR <= {args.max_fpr}: {chosen}")


if __name__ == "__main__":
    main()
