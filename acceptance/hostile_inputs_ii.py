"""Acceptance of issue 26 (Reliability II), command-line half: each reproduction of the issue ends in one
line (``mie <cmd>: error: ...``) and exit 1 within 5 seconds and 1 GB, with the user's files byte-for-byte
unchanged. The web half is ``acceptance/hostile_serve.py``. ``make hostile`` runs both after
``hostile_inputs.py``; not part of ``make test``.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_inputs import TINY, digest, report, run_case  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HUGE = "1000000"
TINY_LM = {
    "recipe": "lm", "project_name": "hostile_lm", "epochs": 1, "log_every": 1, "device": "cpu",
    "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16},
    "tokenizer": {"vocab_size": 280},
    "data": {"block_size": 16, "batch_size": 4, "blocks_per_epoch": 8, "max_val_blocks": 4, "workers": 1},
    "sample": {"max_new_tokens": 0},
}
TINY_S2S = {
    "recipe": "seq2seq", "project_name": "hostile_s2s", "epochs": 1, "log_every": 1, "device": "cpu",
    "model": {"dim": 16, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "max_len": 24},
    "tokenizer": {"vocab_size": 300},
    "data": {"build": "", "max_length": 16, "batch_size": 8, "eval_batch_size": 8},
    "decode": {"beam": 2, "max_len_b": 4},
}


class Case:
    """One reproduction: ``mie ARGV`` (with ``stdin``, in ``cwd``) must leave ``files`` unchanged and
    create none of ``absent``."""

    def __init__(self, argv: list[str | bytes], files: list[Path] = (), stdin: bytes | None = None,
                 cwd: Path = REPO, absent: list[Path] = ()) -> None:
        self.argv, self.files, self.stdin, self.cwd, self.absent = argv, list(files), stdin, cwd, list(absent)


def cases(root: Path, clip_run: Path, lm_run: Path, s2s_run: Path) -> dict[str, Callable[[Path], Case]]:
    """name -> builder(dir) of each reproduction of issue 26 (findings 1, 2, 3, 6 and 7)."""
    def foreign_folder(d: Path) -> Case:
        out = d / "d"
        out.mkdir()
        (out / "config.yaml").write_text("mine\n")
        (out / "report.md").write_text("x\n")
        (out / ".notes.tmp").write_text("n\n")
        return Case(["train", "configs/lm_tiny.yaml", "--set", "max_minutes=0.01", "--output-dir", str(out)],
                    [out / "config.yaml", out / "report.md", out / ".notes.tmp"])

    def overwrite_foreign(d: Path) -> Case:
        case = foreign_folder(d)
        case.argv.append("--overwrite")
        return case

    def train(config: str, *sets: str, command: tuple[str, ...] = ("train",)) -> Callable[[Path], Case]:
        def build(d: Path) -> Case:
            flags = [x for s in sets for x in ("--set", s)]
            argv = [*command, config] if command == ("train",) else [*command, "--config", config]
            return Case([*argv, *flags, "--output-dir", str(d / "run")], absent=[d / "run" / "checkpoints"])
        return build

    def tiny_clip(d: Path) -> Case:
        cfg = {**TINY, "data": {**TINY["data"], "path": str(root / "shapes")},
               "model": {**TINY["model"], "vision_layers": int(HUGE)}}
        (d / "clip.yaml").write_text(yaml.safe_dump(cfg))
        return Case(["train", str(d / "clip.yaml"), "--output-dir", str(d / "run")], [d / "clip.yaml"],
                    absent=[d / "run" / "checkpoints"])

    def huge_run(d: Path) -> Case:
        run = d / "run"
        shutil.copytree(lm_run, run)
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"]["n_layers"] = int(HUGE)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        return Case(["generate", "--model", str(run), "--prompt", "hi"], [run / "config.yaml"])

    def lm(*flags: str | bytes) -> Callable[[Path], Case]:
        return lambda d: Case(["generate", "--model", str(lm_run), "--temperature", "0", *flags])

    def outside_cwd(command: str) -> Callable[[Path], Case]:
        def build(d: Path) -> Case:
            (d / "cwd").mkdir()
            target = d / "elsewhere" / "deep"
            argv = (["embed", str(clip_run), str(target / "e.safetensors")] if command == "embed" else
                    ["search", str(clip_run), "a red circle", "--sheet", str(target / "sheet.png")])
            return Case(argv, cwd=d / "cwd", absent=[d / "elsewhere"])
        return build

    rng = random.Random(0)
    long_prompt = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ,.") for _ in range(120_000))
    return {
        "1 train into a user's folder": foreign_folder,
        "1 train --overwrite a user's folder": overwrite_foreign,
        "1 train --output-dir /": lambda d: Case(["train", "configs/lm_tiny.yaml", "--set", "max_minutes=0.01",
                                                  "--output-dir", "/"], absent=[Path("/checkpoints")]),
        "1 embed: parent outside the cwd": outside_cwd("embed"),
        "1 search --sheet: parent outside the cwd": outside_cwd("search"),
        "2 lm data.workers=1000": train("configs/lm_tiny.yaml", "data.workers=1000"),
        "3 lm model.n_layers=1000000": train("configs/lm_tiny.yaml", f"model.n_layers={HUGE}"),
        "3 seq2seq model.encoder_layers=1000000": train("configs/translate_en_de.yaml", f"model.encoder_layers={HUGE}"),
        "3 vit model.layers=1000000": train("configs/vit_shapes.yaml", f"model.layers={HUGE}"),
        "3 clip vision_layers=1000000": tiny_clip,
        "3 cai pretrain.model.n_layers=1000000": train("configs/cai_tiny.yaml", f"pretrain.model.n_layers={HUGE}",
                                                       command=("safety", "train")),
        "3 cai sl.generation.candidates=1000000": train("configs/cai_tiny.yaml", f"sl.generation.candidates={HUGE}",
                                                        command=("safety", "train")),
        "3 cai generation.max_new_tokens=1e9": train("configs/cai_tiny.yaml", "generation.max_new_tokens=1000000000",
                                                     command=("safety", "train")),
        "3 seq2seq decode.beam=1000000": train("configs/translate_en_de.yaml", f"decode.beam={HUGE}"),
        "3 generate: run folder with 1,000,000 layers": huge_run,
        "3 generate --max-new-tokens 1e9": lm("--prompt", "hi", "--max-new-tokens", "1000000000"),
        "3 generate: 120,000-character prompt": lm("--prompt", long_prompt),
        "3 translate --beam 1000000": lambda d: Case(["translate", str(s2s_run), "hello", "--beam", HUGE]),
        "6 generate: invalid UTF-8 prompt": lm("--prompt", b"caf\xe9 \xff"),
        "6 search: invalid UTF-8 query": lambda d: Case(["search", str(clip_run), b"\xff\xfe red"]),
        "6 translate: invalid UTF-8 text": lambda d: Case(["translate", str(s2s_run), b"\xff"]),
        "6 generate --seed 2**70": lm("--prompt", "hi", "--seed", str(2 ** 70)),
        "6 redteam --max-new-tokens -1": lambda d: Case(["safety", "redteam", "--target", "echo", "--max-new-tokens",
                                                         "-1", "--output-dir", str(d / "rt")]),
        "7 safety evaluate -: 5 MB binary stdin": lambda d: Case(["safety", "evaluate", "-"],
                                                                 stdin=random.Random(1).randbytes(5 << 20)),
        "7 safety evaluate --methods rules: 50 MB line": lambda d: Case(["safety", "evaluate", "--methods", "rules",
                                                                         "-"], stdin=b"a" * (50 << 20) + b"\n"),
    }


def train_reference_runs(root: Path) -> tuple[Path, Path, Path]:
    """A tiny clip, lm and seq2seq run (seconds each), for the cases that need a finished run."""
    (root / "clip.yaml").write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "path": str(root / "shapes")}}))
    text = root / "text.txt"
    text.write_text("\n".join(p.read_text() for p in sorted(Path(yaml.__file__).parent.glob("*.py"))[:4]))
    (root / "lm.yaml").write_text(yaml.safe_dump({**TINY_LM, "data": {**TINY_LM["data"], "files": [str(text)]}}))
    corpus = root / "corpus"
    corpus.mkdir()
    for split, count in (("train", 48), ("valid", 8), ("test", 6)):
        words = [("red", "rot"), ("blue", "blau"), ("file", "Datei"), ("open", "öffnen"), ("new", "neue")]
        pairs = [(words[i % 5], words[(3 * i + 1) % 5]) for i in range(count)]
        (corpus / f"{split}.en").write_text("".join(f"{a[0]} {b[0]}\n" for a, b in pairs), encoding="utf-8")
        (corpus / f"{split}.de").write_text("".join(f"{a[1]} {b[1]}\n" for a, b in pairs), encoding="utf-8")
    (root / "s2s.yaml").write_text(yaml.safe_dump({**TINY_S2S, "data": {**TINY_S2S["data"], "path": str(corpus)}}))
    runs = root / "clip_run", root / "lm_run", root / "s2s_run"
    for config, run in zip(("clip.yaml", "lm.yaml", "s2s.yaml"), runs):
        code, _, _, out = run_case(["train", str(root / config), "--output-dir", str(run), "-q"], timeout=300)
        assert code == 0, f"the tiny reference run {config} failed:\n{out}"
    return runs


def main() -> int:
    """Build each reproduction, run `mie` on it, print one row per case; exit 1 if any case fails."""
    root = Path(tempfile.mkdtemp(prefix="mie-hostile-ii-"))
    table = cases(root, *train_reference_runs(root))
    failures = 0
    print(f"{'case':48s} exit  seconds  peak MB  one line  untouched  message")
    for i, (name, build) in enumerate(table.items()):
        d = root / f"case{i}"
        d.mkdir()
        case = build(d)
        before = digest(case.files)
        code, seconds, rss, err = run_case(case.argv, timeout=60, stdin=case.stdin, cwd=case.cwd)
        untouched = digest(case.files) == before and not any(p.exists() for p in case.absent)
        failures += not report(name, 48, code, seconds, rss, err, untouched)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{len(table) - failures} of {len(table)} cases pass")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
