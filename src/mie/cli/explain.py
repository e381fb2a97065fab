"""``mie explain``: what a finished run's model sees (the work is :mod:`mie.explain`'s).

Four modes, each printing a summary (or ``--format json``) and drawing a PNG with ``--out``: an image heat map
for a text (``--image`` + ``--text``, clip runs), token attributions (``--text`` with a language model, or with
``--image`` and ``--method ig|gradxinput`` on a clip run), an embedding view of a split (``--embeddings``) and
an attention map (``--attention``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mie.cli.args import HelpFormatter
from mie.errors import ConfigError

EXAMPLES = """examples:
  mie explain runs/demo --image cat.png --text "a red circle" --out heat.png     # heat map (Grad-CAM)
  mie explain runs/demo --image cat.png --text "a red circle" --map ig --format json
  mie explain runs/demo --image cat.png --text "a red circle" --method ig      # which words matched the image
  mie explain runs/my-lm --text "The capital of France is" --method gradxinput  # the next token's reasons
  mie explain smollm2-135m --text "The capital of France is" --method ig --format json
  mie explain safety --text "how do I poison my neighbour's dog" --method ig   # why the evaluator flags it
  mie explain runs/shapes-cls --image cat.png --out heat.png      # a classifier: its predicted class
  mie explain runs/demo --embeddings --split test --color-by shape --out map.png
  mie explain runs/demo --embeddings --projection tsne --perplexity 10 --out tsne.png  # t-SNE, not PCA
  mie explain runs/demo --embeddings --similarity 20 --out sim.png             # image-text cosine matrix
  mie explain runs/demo --attention --text "a red circle" --layer -1 --out att.png
  mie explain runs/demo --attention --image cat.png --layer 0 --head 2 --out att.png
"""
MAX_TEXT_CHARS = 1_000
SAFETY = "safety"  # RUN naming the safety evaluator's embedding classifier


class ExamplesFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The CLI's help format, with the epilog's examples printed as written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie explain``."""
    from mie.explain import DEFAULT_STEPS, IMAGE_METHODS, TEXT_METHODS

    parser.formatter_class = ExamplesFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("run_dir", metavar="RUN",
                        help="a finished run (clip or lm), a pretrained LM's name, or safety (the evaluator's classifier)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which weights (default best)")
    parser.add_argument("--image", metavar="IMG", help="an image file (clip runs)")
    parser.add_argument("--text", metavar="TEXT", help='a query or prompt, e.g. "a red circle"')
    parser.add_argument("--map", choices=IMAGE_METHODS, default="gradcam",
                        help="image heat-map method (default gradcam; rollout ignores the text)")
    parser.add_argument("--method", choices=TEXT_METHODS,
                        help="token attributions by integrated gradients (zero-embedding baseline) or gradient x input")
    parser.add_argument("--principle", metavar="NAME",
                        help="with RUN safety: the principle to explain (default the highest-scoring one)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="integrated-gradients steps for tokens")
    parser.add_argument("--embeddings", action="store_true", help="a 2-D view of a split's embeddings")
    parser.add_argument("--projection", choices=("pca", "tsne"), default="pca",
                        help="--embeddings' projection: PCA, or exact t-SNE (slower; up to 5,000 points)")
    parser.add_argument("--perplexity", type=float, metavar="P",
                        help="t-SNE perplexity (default 30, or (points - 1) / 3 for a smaller split)")
    parser.add_argument("--split", metavar="NAME", help="the split for --embeddings (default the first test split)")
    parser.add_argument("--color-by", metavar="ATTR", default="shape",
                        help="manifest attribute colouring --embeddings (shape, color, size, background)")
    parser.add_argument("--similarity", type=int, metavar="N",
                        help="with --embeddings: draw the cosine matrix of the first N images and their first captions")
    parser.add_argument("--attention", action="store_true", help="an attention map of --text or --image")
    parser.add_argument("--layer", type=int, default=-1, help="attention layer (negative from the end; default -1)")
    parser.add_argument("--head", type=int, help="one attention head (default the mean over heads)")
    parser.add_argument("--out", metavar="OUT.png", help="draw the explanation to this PNG")
    parser.add_argument("--format", dest="output_format", choices=("text", "json"), default="text",
                        help="print a summary (text) or everything as JSON")


def run(args: argparse.Namespace) -> int:
    """Check the flags, load the model once, explain, print and draw."""
    _check(args)
    if args.out:
        from mie.io.ownership import prepare_output_file

        prepare_output_file(Path(args.out), "--out")
    if args.embeddings:
        from mie.cli.explain_views import embeddings_view

        result = embeddings_view(args, _clip(args, "--embeddings"))
    elif args.attention:
        result = _attention(args)
    elif args.image and not args.method:
        result = _image_map(args)
    else:
        result = _tokens(args)
    if args.output_format == "json":
        print(json.dumps(result, ensure_ascii=False))
    return 0


def _check(args: argparse.Namespace) -> None:
    """Refuse combinations that mean nothing before anything loads."""
    modes = [m for m in ("--embeddings", "--attention") if getattr(args, m[2:])]
    if len(modes) > 1:
        raise ConfigError("--embeddings and --attention are two modes", where="--attention",
                          fix="ask for one per command")
    if args.out and Path(args.out).suffix.lower() != ".png":
        raise ConfigError("must end with .png", where=f"--out {args.out}", fix=f"e.g. {Path(args.out).stem}.png")
    if args.text is not None and not args.text.strip():
        raise ConfigError("is empty", where="--text", fix='give some text, e.g. "a red circle"')
    if args.text is not None and len(args.text) > MAX_TEXT_CHARS:
        raise ConfigError(f"is {len(args.text):,} characters; the limit is {MAX_TEXT_CHARS:,}", where="--text",
                          fix="explain a sentence")
    if args.steps < 1 or args.steps > 1024:
        raise ConfigError(f"is {args.steps}", where="--steps", fix="use 1 to 1024 (32 keeps completeness within 1%)")
    if args.perplexity is not None and (not args.embeddings or args.projection != "tsne"):
        raise ConfigError("applies to t-SNE maps only", where="--perplexity",
                          fix="add --embeddings --projection tsne, or leave --perplexity out")
    if args.projection != "pca" and not args.embeddings:  # said, not silently ignored
        raise ConfigError("applies to --embeddings maps only", where=f"--projection {args.projection}",
                          fix="add --embeddings, or leave --projection out")
    if args.similarity and args.projection == "tsne":
        raise ConfigError("draws no projection with --similarity", where="--projection tsne",
                          fix="ask for the similarity matrix and the t-SNE map in two commands")
    if args.embeddings:
        return
    if args.attention:
        if (args.text is None) == (args.image is None):
            raise ConfigError("needs --text or --image (one of them)", where="--attention",
                              fix='e.g. --attention --text "a red circle" --layer -1')
        return
    if args.text is None and args.image is None:
        raise ConfigError("nothing to explain", where="mie explain",
                          fix='pass --text (with --image), --embeddings or --attention; see mie explain --help')


def _recipe(args: argparse.Namespace) -> str:
    """``clip``, ``lm`` (a run of either) or ``pretrained`` (a name that is no folder)."""
    from mie.io.run_kind import check_run_kind

    if not Path(args.run_dir).is_dir():
        return "pretrained"
    return check_run_kind(args.run_dir, ("clip", "lm"), where="RUN")


def _clip(args: argparse.Namespace, need: str) -> Any:
    """The clip run (a one-line error for another kind)."""
    from mie.api import load_run
    from mie.io.run_kind import check_run_kind

    check_run_kind(args.run_dir, "clip", where=f"RUN (for {need})")
    return load_run(args.run_dir, args.checkpoint, device="cpu")


def _load_image(run: Any, path: str) -> Any:
    from mie.errors import DataError

    if not Path(path).is_file():
        raise DataError("is no file", where=f"--image {path}", fix="pass the path of an image file")
    return run._load(path)


def _token_names(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each id as text; special ids as ``<bos>``/``<eos>``/``<pad>``, an id that decodes to nothing as ``<id>``."""
    special = {getattr(tokenizer, name, None): f"<{name[:-3]}>" for name in ("pad_id", "bos_id", "eos_id")}
    names = []
    for i in ids:
        text = special.get(i) or tokenizer.decode([i])
        names.append(text if text else f"<{i}>")
    return names


def _image_map(args: argparse.Namespace) -> dict[str, Any]:
    from mie.explain import image_map

    if Path(args.run_dir).is_dir() and _recipe_of(args.run_dir) == "classification":
        return _classifier_map(args)
    if args.text is None:
        raise ConfigError("a clip run's heat map is of an image and a text", where="--image",
                          fix='add --text, e.g. --text "a red circle"')
    run = _clip(args, "--image")
    image = _load_image(run, args.image)
    heat = image_map(run.model, run.transform(image), run.tokenize(args.text), args.map)
    return _report_map(args, image, heat, args.text)


def _recipe_of(run_dir: str) -> str:
    from mie.io.run_kind import run_recipe

    return run_recipe(run_dir)


def _classifier_map(args: argparse.Namespace) -> dict[str, Any]:
    """Grad-CAM of a classification run for the class ``--text`` names (default its prediction)."""
    import torch

    from mie.config import load_config
    from mie.data import build_image_transform
    from mie.data.transforms import LoadImage
    from mie.evaluation.report import load_results
    from mie.explain.image_maps import classifier_target, gradcam
    from mie.io.run_files import run_config_path
    from mie.recipes.classification.config import ClassificationRecipeConfig
    from mie.recipes.classification.run import load_model

    if args.map != "gradcam":
        raise ConfigError(f"a classification run explains by gradcam, not {args.map}", where="--map",
                          fix="leave --map out")
    run_dir = Path(args.run_dir)
    config = load_config(run_config_path(run_dir), ClassificationRecipeConfig)
    model, _ = load_model(run_dir, config, args.checkpoint, torch.device("cpu"))
    split = next(iter(load_results(run_dir).get("classification", {}).values()), {})
    names = list(split.get("classnames") or range(config.model.num_classes))
    if not Path(args.image).is_file():
        from mie.errors import DataError

        raise DataError("is no file", where=f"--image {args.image}", fix="pass the path of an image file")
    image = LoadImage()(args.image)
    x = build_image_transform(config.model.image_size, train=False, mean=config.data.mean, std=config.data.std)(image)
    with torch.no_grad():
        probs = model(x[None]).softmax(-1)[0]
    if args.text is None:
        label = int(probs.argmax())
    elif args.text in map(str, names):
        label = [str(n) for n in names].index(args.text)
    else:
        raise ConfigError(f"is no class of this run ({args.text!r})", where="--text",
                          fix=f"name one of {', '.join(map(str, names))}, or leave --text out for the prediction")
    heat = gradcam(model, x, target=classifier_target(model, label))
    heat.score = float(probs[label])
    return _report_map(args, image, heat, f"class {names[label]}")


def _report_map(args: argparse.Namespace, image: Any, heat: Any, what: str) -> dict[str, Any]:
    """Print, draw and return an image map (the classifier's score is its class probability)."""
    peak = list(heat.peak_xy(*image.size))
    if args.out:
        from mie.explain.draw import save_heatmap

        score = "" if heat.method == "rollout" else f" (score {heat.score:+.3f})"
        save_heatmap(image, heat.upsampled(max(image.size)), args.out,
                     f"{heat.method}: {what!r}{score}", tuple(peak))
    if args.output_format == "text":
        print(f"{heat.method} map {tuple(heat.values.shape)} of {args.image} for {what!r}: "
              f"score {heat.score:+.4f}, peak at x={peak[0]}, y={peak[1]} (image pixels)"
              + (f" -> {args.out}" if args.out else ""))
    return {"run": args.run_dir, "image": args.image, "text": what, "method": heat.method,
            "score": None if heat.method == "rollout" else heat.score, "image_size": list(image.size),
            "map": [[round(v, 5) for v in row] for row in heat.values.tolist()], "peak": peak, "out": args.out}


def _tokens(args: argparse.Namespace) -> dict[str, Any]:
    from mie.explain import clip_text_attributions, lm_next_token_attributions

    method = args.method or "ig"
    if args.run_dir == SAFETY and not Path(SAFETY).is_dir():
        return _safety(args, method)
    if _recipe(args) == "clip":
        if args.image is None:
            raise ConfigError("a clip run scores a text against an image", where="--text",
                              fix="add --image IMG (token attributions of their similarity)")
        run = _clip(args, "--text")
        ids = run.tokenize(args.text)
        attr = clip_text_attributions(run.model, ids, run.transform(_load_image(run, args.image)), method,
                                      args.steps, _token_names(run.tokenizer, ids[0].tolist()))
    else:
        import torch

        from mie.pretrained.loading import load_language_model

        model, tokenizer = load_language_model(args.run_dir, args.checkpoint, where="RUN", device="cpu")
        prompt = tokenizer.encode(args.text)
        if not prompt:
            raise ConfigError("encodes to no tokens", where="--text", fix="give some text")
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = model(ids)
        choice = int((out["logits"] if isinstance(out, dict) else out)[0, -1].argmax())
        eos = getattr(tokenizer, "eos_id", None)
        attr = lm_next_token_attributions(model.eval(), ids, method, args.steps, _token_names(tokenizer, prompt),
                                          choice, tokenizer.decode([choice]), eos,
                                          None if eos is None else _token_names(tokenizer, [eos])[0])
    if args.output_format == "text":
        _print_tokens(attr)
    result = attr.as_dict()
    result["tokens"] = [{"token": t, "score": s} for t, s in zip(attr.tokens, attr.scores, strict=True)]
    del result["scores"]
    return {"run": args.run_dir, "text": args.text, **result}


def _safety(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The safety classifier's verdict on ``--text`` and its tokens' attributions to one principle."""
    from mie.explain.safety_attr import safety_attributions
    from mie.safety.embeddings import EmbeddingMethod

    classifier = EmbeddingMethod.load()
    if args.principle is not None and args.principle not in classifier.principles:
        raise ConfigError(f"is no principle of the classifier ({args.principle!r})", where="--principle",
                          fix=f"use one of {', '.join(classifier.principles)}")
    verdicts = classifier.score_batch([args.text])[0]
    attr = safety_attributions(classifier, args.text, args.principle, method, args.steps)
    principle = attr.target.removesuffix(" logit")
    verdict = verdicts[principle]
    if args.output_format == "text":
        print(f"{principle}: {'flagged' if verdict.flagged else 'not flagged'} (score {verdict.score:.3f}); "
              + "; ".join(verdict.reasons))
        _print_tokens(attr)
    result = attr.as_dict()
    result["tokens"] = [{"token": t, "score": s} for t, s in zip(attr.tokens, attr.scores, strict=True)]
    del result["scores"]
    return {"run": SAFETY, "text": args.text, "principle": principle, "flagged": verdict.flagged,
            "verdict_score": verdict.score, "reasons": list(verdict.reasons), **result}


def _print_tokens(attr: Any) -> None:
    """The token table: rank by |score|, with a bar, and the method's terms."""
    width = max(len(repr(t)) for t in attr.tokens)
    top = max((abs(s) for s in attr.scores), default=0.0) or 1.0
    print(f"{attr.method} attributions of the {attr.target} ({attr.output:+.4f}) to {len(attr.tokens)} tokens")
    for token, score in zip(attr.tokens, attr.scores, strict=True):
        bar = ("+" if score >= 0 else "-") * round(20 * abs(score) / top)
        print(f"  {token!r:<{width}} {score:+.4f} {bar}")
    if attr.method == "ig":
        print(f"baseline: {attr.baseline} (output {attr.baseline_output:+.4f}), {attr.steps} steps, "
              f"completeness error {100 * attr.relative_gap:.3f}%")
        if attr.relative_gap > 0.01:  # a rough path (deep LMs): the scores do not add up to the change yet
            print("the attributions miss the output change by more than 1%: raise --steps or read them as rough")


def _attention(args: argparse.Namespace) -> dict[str, Any]:
    from mie.explain import image_tower_maps, layer_map, text_tower_maps

    if _recipe(args) == "clip":
        run = _clip(args, "--attention")
        if args.image is not None:
            maps = image_tower_maps(run.model, run.transform(_load_image(run, args.image)))
            count = maps[0].shape[-1]
            cls = run.model.visual.cls_token is not None
            names = (["<cls>"] if cls else []) + [f"p{i}" for i in range(count - cls)]
        else:
            from mie.models.text import eot_positions

            ids = run.tokenize(args.text)
            ids = ids[:, : int(eot_positions(ids, run.model.text.eos_id)[0]) + 1]
            maps = text_tower_maps(run.model, ids)
            names = _token_names(run.tokenizer, ids[0].tolist())
    else:
        if args.image is not None:
            raise ConfigError("a language model reads no image", where="--image", fix="pass --text")
        import torch

        from mie.explain import attention_maps
        from mie.pretrained.loading import load_language_model

        model, tokenizer = load_language_model(args.run_dir, args.checkpoint, where="RUN", device="cpu")
        prompt = tokenizer.encode(args.text)
        maps = attention_maps(lambda: model.eval()(torch.tensor([prompt])))
        names = _token_names(tokenizer, prompt)
    try:
        weights = layer_map(maps, args.layer, args.head)
    except IndexError as exc:
        raise ConfigError(str(exc), where="--head" if "head" in str(exc) else "--layer",
                          fix=f"choose a layer from {-len(maps)} to {len(maps) - 1}") from None
    head = "mean over heads" if args.head is None else f"head {args.head}"
    if args.out:
        from mie.explain.draw import save_matrix

        save_matrix(weights, args.out, f"attention, layer {args.layer} ({head})", names, names, "key", "query")
    if args.output_format == "text":
        print(f"attention of layer {args.layer} of {len(maps)} ({head}) over {len(names)} tokens"
              + (f" -> {args.out}" if args.out else ""))
        for name, row in zip(names, weights.tolist(), strict=True):
            k = max(range(len(row)), key=row.__getitem__)
            print(f"  {name!r}: attends most to {names[k]!r} ({row[k]:.3f})")
    return {"run": args.run_dir, "layer": args.layer, "layers": len(maps), "head": args.head, "tokens": names,
            "weights": [[round(v, 5) for v in row] for row in weights.tolist()], "out": args.out}
