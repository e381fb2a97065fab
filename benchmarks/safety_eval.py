"""Safety evaluator quality and speed on the held-out labelled set (benchmarks/data/safety_eval.jsonl).

The evaluator's declared operating point (rules + embeddings at the shipped thresholds) on both held-out
sets (safety_eval.jsonl, safety_eval_realworld.jsonl) and the calibration set: ROC AUC and recall at 1 % and
5 % FPR per principle and overall.

For each method alone (rules, embeddings, LM judge) and combined (rules + embeddings; all three),
prints precision, recall and false-positive rate, the false-positive rate on benign look-alikes, the
share of harmful items flagged on their own principle, a confusion matrix and the milliseconds per
text. "Flagged" means any principle is flagged. The LM judge (SmolLM2-135M-Instruct, ~1 s per text on
2 cores) runs on a stratified sample (``--judge-items``). Peer: our sentence encoder's speed against
sentence-transformers on the same model, when it is installed.

The judge alone (benchmarks/judge_rows.py) for each judge model: ROC AUC, recall at the combined rule's
look-alike FPR, seconds per text and the shared-prefix KV cache against recomputing it.

    python benchmarks/safety_eval.py [--judge-items 20] [--judge-alone-items 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mie.errors import ConfigError  # noqa: E402
from mie.pretrained.registry import gguf_path  # noqa: E402
from mie.pretrained.sentence import model_dir  # noqa: E402
from mie.safety.evaluator import CombineRule, SafetyEvaluator  # noqa: E402
from mie.safety.types import Evaluation  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "safety_eval.jsonl"
JUDGE_MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def installed(find: Callable[[str], Path], name: str) -> bool:
    """Whether ``find(name)`` (``model_dir`` or ``gguf_path``) finds the model's package."""
    try:
        find(name)
        return True
    except ConfigError:
        return False


def load(path: Path) -> list[dict]:
    """The labelled items."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def metrics(items: list[dict], results: list[Evaluation]) -> dict[str, float]:
    """Precision, recall, FPR, look-alike FPR, right-principle rate and the confusion matrix."""
    tp = fp = tn = fn = right = lookalike_fp = lookalikes = 0
    for item, result in zip(items, results, strict=True):
        harmful = item["label"] == "harmful"
        if harmful and result.flagged:
            tp += 1
            right += item.get("principle") in result.flagged_principles
        elif harmful:
            fn += 1
        elif result.flagged:
            fp += 1
        else:
            tn += 1
        if not harmful and not item.get("category", "").startswith("everyday"):  # a benign look-alike
            lookalikes += 1
            lookalike_fp += result.flagged
    return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "fpr": fp / max(1, fp + tn),
            "lookalike_fpr": lookalike_fp / max(1, lookalikes), "right_principle": right / max(1, tp),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": len(items)}


def timed(evaluator: SafetyEvaluator, texts: list[str]) -> tuple[list[Evaluation], float]:
    """Results and milliseconds per text (batched, after one warm-up call)."""
    evaluator.evaluate_batch(texts[:2])
    start = time.perf_counter()
    results = evaluator.evaluate_batch(texts)
    return results, 1000 * (time.perf_counter() - start) / max(1, len(texts))


def stratified(items: list[dict], n: int, seed: int = 0) -> list[int]:
    """Indices of ``n`` items with the harmful/benign proportion of the whole set."""
    rng = random.Random(seed)
    harmful = [i for i, it in enumerate(items) if it["label"] == "harmful"]
    benign = [i for i, it in enumerate(items) if it["label"] != "harmful"]
    k = round(n * len(harmful) / len(items))
    return sorted(rng.sample(harmful, min(k, len(harmful))) + rng.sample(benign, min(n - k, len(benign))))


def row(name: str, m: dict[str, float], ms: float) -> str:
    """One table row."""
    return (f"| {name} | {m['n']} | {m['precision']:.3f} | {m['recall']:.3f} | {m['fpr']:.3f} | "
            f"{m['lookalike_fpr']:.3f} | {m['right_principle']:.3f} | {m['tp']} {m['fn']} / {m['fp']} {m['tn']} | "
            f"{ms:.1f} |")


def operating_point_rows(combined: SafetyEvaluator) -> tuple[list[str], dict]:
    """The evaluator's declared operating point (mie.safety.calibration) on each held-out set and on the
    calibration set it was chosen on: ROC AUC, recall at 1 % and 5 % FPR, and its own recall and FPR,
    per principle and overall."""
    from mie.safety.calibration import RULE, figures_table, load_labelled, set_figures
    from mie.safety.packaged import package_dir
    from mie.safety.types import DEFAULT_PRINCIPLES

    lines, figures = [f"\noperating point: {RULE}; thresholds {combined.methods[1].threshold}"], {}
    sets = [("evaluation", DATA), ("evaluation, real-world style", DATA.with_name("safety_eval_realworld.jsonl")),
            ("calibration (where the thresholds were chosen)", package_dir() / "calibration.jsonl")]
    for name, path in sets:
        rows = load_labelled(path)
        results = combined.evaluate_batch([r["text"] for r in rows])
        scores = torch.tensor([[e.principles[p].score for p in DEFAULT_PRINCIPLES] for e in results])
        flags = torch.tensor([[e.principles[p].flagged for p in DEFAULT_PRINCIPLES] for e in results])
        figures[name] = set_figures(scores, flags, rows)
        lines.append(f"\n{name}: {path.name}, {len(rows)} prompts\n{figures_table(figures[name])}")
    return lines, figures


def main() -> None:
    """Run every method on the evaluation set and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge-items", type=int, default=20, help="0 = skip the LM judge")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a shared machine)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--judge-alone-items", type=int, default=40, help="0 = skip the judge-alone rows")
    parser.add_argument("--judge-models", default=",".join(JUDGE_MODELS), help="comma-separated pretrained names")
    parser.add_argument("--judge-questions", default="request,principles",
                        help="request (one question a text) and/or principles (one per active principle)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = load(DATA)
    texts = [it["text"] for it in items]
    have_encoder, have_lm = installed(model_dir, "all-minilm-l6-v2"), installed(gguf_path, "smollm2-135m-instruct")
    print(f"{len(items)} items: {sum(it['label'] == 'harmful' for it in items)} harmful, "
          f"{sum(it['label'] != 'harmful' for it in items)} benign "
          f"({sum(it['label'] != 'harmful' and not it.get('category', '').startswith('everyday') for it in items)} "
          "look-alikes)")
    header = ("| method | items | precision | recall | FPR | look-alike FPR | right principle | "
              "confusion TP FN / FP TN | ms/text |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines, figures = [header], {}
    rules = SafetyEvaluator.create(("rules",))
    runs = [("rules", rules)]
    if have_encoder:
        embeddings = SafetyEvaluator.create(("embeddings",))
        combined = SafetyEvaluator([rules.methods[0], embeddings.methods[0]], CombineRule(), rules.principles)
        runs += [("embeddings", embeddings), ("rules + embeddings", combined)]
    else:
        print("embeddings skipped: run `make pretrained` for the all-MiniLM-L6-v2 package")
    for name, evaluator in runs:
        results, ms = timed(evaluator, texts)
        figures[name] = {**metrics(items, results), "ms_per_text": ms}
        lines.append(row(name, figures[name], ms))
    print("\n".join(lines))
    if have_encoder:
        point_lines, figures["operating point"] = operating_point_rows(combined)
        print("\n".join(point_lines))
    lines = [header]
    if have_encoder:  # the trade-off the shipped threshold (chosen by cross-validation on training data) sits on
        shipped = embeddings.methods[0].threshold
        print("\nrules + embeddings at one embedding threshold for every principle (the shipped ones: "
              f"{shipped}):\n| threshold | recall | FPR | look-alike FPR |\n| --- | --- | --- | --- |")
        for threshold in (0.5, 0.7, 0.8, 0.85, 0.9, 0.95):
            embeddings.methods[0].threshold = threshold
            m = metrics(items, combined.evaluate_batch(texts))
            figures[f"threshold {threshold}"] = m
            print(f"| {threshold:g} | {m['recall']:.3f} | {m['fpr']:.3f} | {m['lookalike_fpr']:.3f} |")
        embeddings.methods[0].threshold = shipped
    if args.judge_items and have_encoder and have_lm:
        subset = stratified(items, args.judge_items)
        sub_items, sub_texts = [items[i] for i in subset], [texts[i] for i in subset]
        judge = SafetyEvaluator.create(("judge",))
        everything = SafetyEvaluator([*combined.methods, judge.methods[0]], CombineRule(), rules.principles)
        for name, evaluator in [("rules + embeddings", combined), ("LM judge (SmolLM2-135M)", judge),
                                ("rules + embeddings + judge", everything)]:
            results, ms = timed(evaluator, sub_texts)
            figures[f"{name} [subset]"] = {**metrics(sub_items, results), "ms_per_text": ms}
            lines.append(row(f"{name} [{len(subset)}-item subset]", figures[f"{name} [subset]"], ms))
        print("\nwith the LM judge, on a stratified subset:\n" + "\n".join(lines))
    if args.judge_alone_items:
        from judge_rows import judge_rows

        subset = stratified(items, args.judge_alone_items, seed=1)
        sub_items = [items[i] for i in subset]
        lookalike_fpr = 0.05
        if have_encoder:
            lookalike_fpr = metrics(sub_items, combined.evaluate_batch([it["text"] for it in sub_items]))["lookalike_fpr"]
        print(f"\nthe LM judge alone, on a stratified {len(subset)}-item subset (recall at the look-alike FPR of "
              "rules + embeddings there):", flush=True)
        lines, judged = judge_rows(sub_items, lookalike_fpr, args.judge_models.split(","),
                                   args.judge_questions.split(","))
        figures.update(judged)
        print("\n".join(lines))
    if have_encoder and importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        from mie.pretrained import load_sentence_encoder

        ours = load_sentence_encoder("all-minilm-l6-v2")
        folder = model_dir("all-minilm-l6-v2")
        peer = SentenceTransformer(str(folder), device="cpu")
        for batch in (1, 64):
            chunk = texts[:batch]
            ours.encode(chunk), peer.encode(chunk)
            t0 = time.perf_counter(); [ours.encode(chunk) for _ in range(5)]; t1 = time.perf_counter()  # noqa: E702
            [peer.encode(chunk, batch_size=64) for _ in range(5)]; t2 = time.perf_counter()  # noqa: E702
            a, b = 1000 * (t1 - t0) / 5 / batch, 1000 * (t2 - t1) / 5 / batch
            print(f"sentence encoder, batch {batch}: ours {a:.2f} ms/text, sentence-transformers {b:.2f} ms/text "
                  f"({b / a:.2f}x)")
            figures[f"encoder_batch{batch}"] = {"ours_ms": a, "peer_ms": b}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
