"""Do the safety classifier's top-attributed words overlap the words a reader marks as harmful? (issue 32)

For each item of the hand-marked set (benchmarks/data/safety_marked.jsonl: 40 harmful prompts of the
evaluation set that the shipped evaluator flags, with the 1 to 4 words that carry the harm; see
safety_marked.md), the embedding classifier's token attributions to the item's principle logit
(``mie.explain.safety_attr``, integrated gradients and gradient x input) are summed into words (WordPiece
``##`` pieces join their word; ``mie.explain.overlap``) and the words ranked by score. Against the marks, at
k = the number of marked words: hit@1 (the top word is marked), precision@k and recall@k (equal here, since
every marked word is a word of its text). Baselines: a uniformly random ranking (its exact expectation)
and longer words first (ties in random order, exactly). Punctuation and [CLS]/[SEP] are not candidates::

    .venv/bin/python benchmarks/safety_attribution.py [--threads 1] [--steps 32] [--show]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts: idle OpenMP threads must not spin

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mie.explain.integrated import DEFAULT_STEPS  # noqa: E402
from mie.explain.overlap import (  # noqa: E402
    Overlap,
    longest_first,
    mean_overlap,
    overlap,
    random_overlap,
    word_scores,
)
from mie.explain.text_attr import TEXT_METHODS  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "safety_marked.jsonl"
BASELINES = ("random (expected)", "longest word first")


def load(path: Path) -> list[dict]:
    """The marked items."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """Print the overlap table of each attribution method and baseline on the marked set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA), help="the marked items (jsonl)")
    parser.add_argument("--methods", default=",".join(TEXT_METHODS))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="integrated-gradients steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--show", action="store_true", help="also print each item's top-k words per method")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mie.pretrained.sentence import encoder_installed

    if not encoder_installed():  # as the other benchmarks: say what is missing, exit 0
        print("the safety classifier needs the all-MiniLM-L6-v2 package (`make pretrained`); skipped")
        return 0
    from mie.explain.safety_attr import safety_attributions
    from mie.safety.embeddings import EmbeddingMethod

    items = load(Path(args.data))
    start = time.perf_counter()
    classifier = EmbeddingMethod.load()
    load_s = time.perf_counter() - start
    methods = args.methods.split(",")
    results: dict[str, list[Overlap]] = defaultdict(list)
    by_principle: dict[tuple[str, str], list[Overlap]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    gaps, missing, flagged = [], [], 0
    for item in items:
        marked, principle = item["harmful_words"], item["principle"]
        words = None
        for method in methods:
            t0 = time.perf_counter()
            attr = safety_attributions(classifier, item["text"], principle, method, args.steps)
            seconds[method] += time.perf_counter() - t0
            scores = word_scores(attr.tokens, attr.scores)
            words = list(scores)
            result = overlap(scores, marked)
            results[method].append(result)
            by_principle[(method, principle)].append(result)
            if method == "ig":
                gaps.append(attr.relative_gap)
            if args.show:
                top = sorted(scores, key=lambda w: -scores[w])[: len(marked)]
                print(f"  {method:<10} {principle:<16} top {top} marked {marked}  {item['text'][:60]!r}")
        missing += [(w, item["text"]) for w in marked if w not in words]
        for name, result in zip(BASELINES, (random_overlap(words, marked), overlap(longest_first(words), marked)),
                                strict=True):
            results[name].append(result)
            by_principle[(name, principle)].append(result)
        probs, _ = classifier.probabilities([item["text"]])
        flagged += float(probs[0, classifier.principles.index(principle)]) >= classifier.threshold_of(principle)
    total_s = time.perf_counter() - start

    n, ks = len(items), [len(it["harmful_words"]) for it in items]
    words_n = [r.n for r in results[BASELINES[0]]]
    print(f"{Path(args.data).name}: N = {n} items, {sum(ks)} marked words (k = 1..{max(ks)}, mean {statistics.mean(ks):.2f}), "
          f"{statistics.mean(words_n):.1f} candidate words per item on average; flagged by the classifier on "
          f"their principle: {flagged}/{n}; threads {args.threads}, IG {args.steps} steps")
    if missing:
        print(f"marked words that are no word of their text as tokenized ({len(missing)}): {missing[:5]}")
    print(f"\n{'ranking':<20} {'hit@1':>6} {'P@k':>6} {'R@k':>6} {'s/item':>7}")
    for name in [*methods, *BASELINES]:
        hit1, precision, recall = mean_overlap(results[name])
        per_item = f"{seconds[name] / n:.2f}" if name in seconds else "-"
        print(f"{name:<20} {hit1:>6.3f} {precision:>6.3f} {recall:>6.3f} {per_item:>7}")
    principles = list(dict.fromkeys(it["principle"] for it in items))
    print(f"\nP@k by principle (items):\n{'ranking':<20} " + " ".join(f"{p[:12]:>12}" for p in principles))
    counts = " ".join(f"{'(' + str(len(by_principle[(methods[0], p)])) + ')':>12}" for p in principles)
    print(f"{'':<20} {counts}")
    for name in [*methods, *BASELINES]:
        cells = " ".join(f"{mean_overlap(by_principle[(name, p)])[1]:>12.3f}" for p in principles)
        print(f"{name:<20} {cells}")
    print()
    for name in methods:  # paired, item by item: is the method's lead over the longer-words baseline broad?
        pairs = [(a.precision, b.precision) for a, b in zip(results[name], results[BASELINES[1]], strict=True)]
        print(f"{name} against {BASELINES[1]}, P@k item by item: higher on {sum(a > b for a, b in pairs)}, "
              f"equal on {sum(a == b for a, b in pairs)}, lower on {sum(a < b for a, b in pairs)}")
    if gaps:
        print(f"IG completeness error: median {100 * statistics.median(gaps):.3f}%, max {100 * max(gaps):.3f}%")
    print(f"run time {total_s:.1f} s (classifier load {load_s:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
