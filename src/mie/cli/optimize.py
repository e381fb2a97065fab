"""``mie optimize``: quantize, prune, benchmark and profile a run or a pretrained LM.

``quantize RUN_OR_MODEL --method dynamic-int8|static-int8|int8-weight|int4-weight [--group-size N] --output OUT``
(static-int8 calibrates activation ranges on ``--calibration-batches`` batches of the run's own data),
``prune RUN_OR_MODEL --method magnitude|wanda|heads|neurons --amount 0.5 [--finetune-steps N] --output OUT``,
``benchmark RUN_OR_MODEL [OTHER]`` and ``profile RUN_OR_MODEL``. ``--text FILE`` gives an LM's perplexity on
that text (its second half; the first half calibrates Wanda). quantize and prune print the task metric and the
speed before and after and write OUT as a run directory (see :mod:`mie.cli.optimize_runs`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from mie.errors import ConfigError

logger = logging.getLogger(__name__)
QUANTIZE_METHODS = ("dynamic-int8", "static-int8", "int8-weight", "int4-weight")
PRUNE_METHODS = ("magnitude", "wanda", "heads", "neurons")


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN_OR_MODEL",
                        help="a clip, lm, seq2seq or classification run directory, or a pretrained LM's name "
                             "(smollm2-135m-instruct)")
    parser.add_argument("--text", metavar="FILE", help="an LM's perplexity on this text (its second half)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which weights of a run")


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, metavar="OUT", help="the new run directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run of ours in OUT")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per speed measurement (default 5)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie optimize``: one sub-command per action."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    quantize = sub.add_parser("quantize", help="int8 / int4 linear layers; writes a new run")
    _source_arguments(quantize)
    quantize.add_argument("--method", choices=QUANTIZE_METHODS, required=True)
    quantize.add_argument("--group-size", type=int, metavar="N",
                          help="inputs per scale (0 = one per output row; default 0 for int8, 32 for int4)")
    quantize.add_argument("--embedding-bits", type=int, choices=(8, 4),
                          help="an LM's token embedding and tied head (default: the method's bits)")
    quantize.add_argument("--calibration-batches", type=int, default=32, metavar="N",
                          help="static-int8: batches of the run's own data that calibrate activation ranges")
    _output_arguments(quantize)
    prune = sub.add_parser("prune", help="unstructured (magnitude, wanda) or structured (heads, neurons) pruning")
    _source_arguments(prune)
    prune.add_argument("--method", choices=PRUNE_METHODS, required=True)
    prune.add_argument("--amount", type=float, default=0.5, help="fraction removed (default 0.5)")
    prune.add_argument("--scope", choices=("layer", "global"), default="layer", help="magnitude ranking scope")
    prune.add_argument("--finetune-steps", type=int, default=0, metavar="N",
                       help="fine-tune N steps through the trainer after pruning (zeros stay zero)")
    prune.add_argument("--iterations", type=int, default=1, metavar="K",
                       help="prune in K rounds of amount/K, fine-tuning finetune-steps/K after each (default 1)")
    prune.add_argument("--calibration-batches", type=int, default=8, metavar="N", help="batches for wanda")
    _output_arguments(prune)
    bench = sub.add_parser("benchmark", help="latency, throughput, memory, size, parameters (JSON, table, plot)")
    _source_arguments(bench)
    bench.add_argument("other", nargs="?", metavar="OTHER", help="a second run or model to compare with")
    bench.add_argument("--repeats", type=int, default=10)
    bench.add_argument("--json", metavar="FILE", help="write the measurements here (default: print only)")
    bench.add_argument("--plot", metavar="PNG", help="bar charts of the measurements")
    bench.add_argument("--precision", metavar="LIST", default="fp32",
                       help="comma-separated precisions to time, as the trainer's precision key (fp32,bf16,fp16,auto)")
    profile = sub.add_parser("profile", help="time and memory per module (torch.profiler)")
    _source_arguments(profile)
    profile.add_argument("--top", type=int, default=20, help="modules shown (default 20)")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action."""
    return {"quantize": _quantize, "prune": _prune, "benchmark": _benchmark, "profile": _profile}[args.action](args)


def _prepare_output(args: argparse.Namespace) -> Path:
    output = Path(args.output)
    if args.source and Path(args.source).resolve() == output.resolve():
        raise ConfigError("is the source run", where="--output", fix="write the optimized run to a new folder")
    if output.is_dir() and any(output.iterdir()):
        if not args.overwrite:
            raise ConfigError(f"{output} is not empty", where="--output",
                              fix="choose a new folder, or pass --overwrite to replace an earlier run of ours")
        from mie.io.ownership import claim_run_folder

        claim_run_folder(output, "--output", overwrite=True)  # refuses a folder that is not ours
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
    return output


def _compare(kind: str, before: dict[str, Any], after: dict[str, Any], label: str) -> tuple[str, dict[str, Any]]:
    from mie.cli.optimize_runs import headline
    from mie.optimization.benchmark import format_table

    rows = {"before": {**headline(kind, before["results"]), **before["speed"], **before["stats"]},
            label: {**headline(kind, after["results"]), **after["speed"], **after["stats"]}}
    ratio = after["speed"]["throughput"] / max(before["speed"]["throughput"], 1e-9)
    size = before["stats"]["memory_mb"] / max(after["stats"]["memory_mb"], 1e-9)
    table = format_table(rows) + f"\n\nthroughput x{ratio:.2f}, weights {size:.2f}x smaller in memory"
    return table, {"rows": rows, "throughput_ratio": round(ratio, 3), "size_ratio": round(size, 3)}


def _measure(loaded: Any, model: Any, output: Path, repeats: int, results: Any = None,
             weights: Path | None = None) -> dict[str, Any]:
    from mie.cli.optimize_runs import score, speed
    from mie.optimization.benchmark import model_stats

    started = time.monotonic()
    results = results if results is not None else score(loaded, model, output)
    measured = {"results": results, "speed": speed(loaded, model, repeats), "stats": model_stats(model, weights)}
    logger.info("measured %s in %.1f s", loaded.source, time.monotonic() - started)
    return measured


def _finish(args: argparse.Namespace, loaded: Any, model: Any, optimization: dict[str, Any], label: str,
            before: dict[str, Any]) -> int:
    from mie.cli.optimize_runs import append_report, load_source, write_run

    output = Path(args.output)
    results, weights = write_run(loaded, model, output, optimization, {"optimization": label})
    reloaded = load_source(str(output), args.text)  # what `mie eval` / `generate` / `serve` will load
    after = _measure(reloaded, reloaded.model, output, args.repeats, results, weights)
    table, details = _compare(loaded.kind, before, after, label)
    append_report(output, label, table, {**details, "scheme": optimization})
    print(table)
    print(f"wrote {output} (mie eval {output} re-scores it)")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from mie.cli.optimize_runs import load_source, open_output
    from mie.optimization.quantize import quantize_model

    output = _prepare_output(args)
    loaded = load_source(args.source, args.text, args.checkpoint)
    open_output(output, loaded.kind)
    before = _measure(loaded, loaded.model, output, args.repeats, weights=loaded.weights)
    ranges = None
    if args.method == "static-int8":
        from mie.cli.optimize_prune import calibration
        from mie.optimization.static_int8 import activation_ranges

        if args.calibration_batches < 1:
            raise ConfigError(f"{args.calibration_batches} batches", where="--calibration-batches", fix="use 1 or more")
        batches, forward = calibration(loaded, output, args.calibration_batches)
        ranges = activation_ranges(loaded.model, batches, forward)
    scheme = quantize_model(loaded.model, args.method, args.group_size, embedding_bits=args.embedding_bits,
                            activation_ranges=ranges)
    if ranges:
        scheme["calibration"] = {"batches": len(batches), "rows": max(r["rows"] for r in ranges.values())}
    label = args.method + (f" g{scheme['group_size']}" if scheme["group_size"] else "")
    label += f" emb int{args.embedding_bits}" if args.embedding_bits else ""
    return _finish(args, loaded, loaded.model, {"quantization": scheme}, label, before)


def _prune(args: argparse.Namespace) -> int:
    from mie.cli.optimize_prune import check_finetune, prune_loaded
    from mie.cli.optimize_runs import load_source, open_output

    if not 0.0 <= args.amount < 1.0:
        raise ConfigError(f"{args.amount} is not a fraction in [0, 1)", where="--amount", fix="e.g. --amount 0.5")
    output = _prepare_output(args)
    loaded = load_source(args.source, args.text, args.checkpoint)
    if args.finetune_steps:
        check_finetune(loaded)  # before the output folder is created
    open_output(output, loaded.kind)
    before = _measure(loaded, loaded.model, output, args.repeats, weights=loaded.weights)
    optimization = prune_loaded(loaded, args, output)
    label = f"{args.method} {args.amount:g}" + (f" + {args.finetune_steps} steps" if args.finetune_steps else "")
    return _finish(args, loaded, loaded.model, optimization, label, before)


def _benchmark(args: argparse.Namespace) -> int:
    import json

    from mie.cli.optimize_runs import load_source, speed
    from mie.optimization.benchmark import format_table, model_stats, plot_benchmarks
    from mie.optimization.precision import inference_precision
    from mie.training.device import PRECISIONS

    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ConfigError(f"{args.precision!r} is not a list of precisions", where="--precision",
                          fix=f"use a comma-separated list of {', '.join(PRECISIONS)}")
    rows: dict[str, dict[str, Any]] = {}
    for source in [args.source, *([args.other] if args.other else [])]:
        loaded = load_source(source, args.text, args.checkpoint)
        for precision in precisions:
            name = (Path(source).name or source) + (f" {precision}" if len(precisions) > 1 else "")
            with inference_precision(precision, torch_cpu()):
                rows[name] = {**speed(loaded, loaded.model, args.repeats), **model_stats(loaded.model, loaded.weights)}
        del loaded
    print(format_table(rows))
    if len(rows) == 2:
        first, second = rows.values()
        print(f"throughput x{second['throughput'] / max(first['throughput'], 1e-9):.2f} (second / first)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot_benchmarks(rows, args.plot)}")
    return 0


def torch_cpu() -> Any:
    """The CPU device (``mie optimize`` measures on the CPU)."""
    import torch

    return torch.device("cpu")


def _profile(args: argparse.Namespace) -> int:
    from mie.cli import optimize_families as families
    from mie.cli.optimize_runs import load_source
    from mie.optimization.benchmark import dual_encoder_workload, generation_workload
    from mie.optimization.profile import format_profile, profile_modules

    loaded = load_source(args.source, args.text, args.checkpoint)
    if loaded.kind in families.FAMILIES:
        fn, _ = families.workload(loaded.kind, loaded.model, loaded.tokenizer, loaded.config)
    elif loaded.kind == "clip":
        fn, _ = dual_encoder_workload(loaded.model, batch=64)
    else:
        fn, _ = generation_workload(loaded.model, [loaded.tokenizer.bos_id, *loaded.tokenizer.encode("def ")], 8)
    print(format_profile(profile_modules(loaded.model, fn), args.top))
    return 0
