"""Acceptance: every hostile or corrupt input of issue 11 gives one clear line and exit 1 within
5 seconds and 1 GB, and leaves the user's files untouched. Each case runs `mie` in a child process
whose wall time and peak memory (max RSS) are measured. `make hostile` runs it; not part of `make test`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "recipe": "clip", "project_name": "hostile", "epochs": 1, "log_every": 1, "device": "cpu",
    "model": {"embed_dim": 16, "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
              "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "context_length": 24},
    "data": {"format": "synthetic", "batch_size": 8, "test_splits": ["test"],
             "synthetic": {"num_train": 16, "num_val": 8, "num_test": 8, "num_heldout": 4, "image_size": 24}},
    "tokenizer": {"name": "bpe", "vocab_size": 300},
}
LIMIT_S, LIMIT_BYTES = 5.0, 1 << 30


def png_header_only(width: int, height: int) -> bytes:
    """A small valid-looking PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\x00" * 20000, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def alias_bomb() -> str:
    lines = ["recipe: clip", "loss:", "  name: clip", "  kwargs:", "    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def sparse_tar(path: Path) -> None:
    """A ~10 KB tar whose one member declares 2 GiB (its data is missing)."""
    info = tarfile.TarInfo("000000.jpg")
    info.size = 2 << 30
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    path.write_bytes(header + b"\x00" * 9000)


def cases(root: Path, finished_run: Path) -> dict[str, Callable[[Path], tuple[list[str], list[Path]]]]:
    """name -> builder(dir) returning (mie argv, files that must stay untouched)."""
    def config(text: str | bytes, name: str = "cfg.yaml"):
        def build(d: Path):
            path = d / name
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
            return ["train", str(path), "--output-dir", str(d / "run")], [path]
        return build

    def run_copy(mutate: Callable[[Path], list[Path]], command: str = "eval"):
        def build(d: Path):
            run = d / "run"
            shutil.copytree(finished_run, run)
            touched = mutate(run)
            return [command, str(run)], touched
        return build

    def dataset(files: dict[str, bytes], target: str = "", fmt: str | None = None, folders: tuple[str, ...] = ()):
        def build(d: Path):
            for folder in folders:  # image folders, so the reader gets as far as the annotations
                (d / folder).mkdir(parents=True, exist_ok=True)
            for rel, data in files.items():
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / rel).write_bytes(data)
            argv = ["data", "inspect", str(d / target)] + (["--format", fmt] if fmt else [])
            return argv, [d / rel for rel in files]
        return build

    def tokenizer_with(edit: Callable[[dict], None]) -> Callable[[Path], list[Path]]:
        def mutate(run: Path) -> list[Path]:
            path = run / "tokenizer.json"
            data = json.loads(path.read_text())
            edit(data)
            path.write_text(json.dumps(data))
            return [path]
        return mutate

    def sidecar_list(run: Path) -> list[Path]:
        for path in (run / "checkpoints").rglob("best.json"):
            path.unlink()
            path.write_text("[1, 2, 3]")
        return [run / "checkpoints" / "best.json"]

    def other_architecture(run: Path) -> list[Path]:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"]["embed_dim"] = 32
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        return [run / "config.yaml"]

    def user_dataset(d: Path):
        data = d / "mydata"
        (data / "images" / "train").mkdir(parents=True)
        (data / "images" / "train" / "cat.png").write_bytes(png_header_only(4, 4))
        (data / "captions.jsonl").write_text('{"image": "images/train/cat.png", "caption": "a cat", "split": "train"}\n')
        (data / "dataset.json").write_text('{"name": "my own dataset"}')
        cfg = {k: v for k, v in TINY.items() if k != "data"}
        cfg["data"] = {"path": str(data), "format": "synthetic"}
        path = d / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return ["train", str(path), "--output-dir", str(d / "run")], [*data.rglob("*.*")]

    deep_json = b"[" * 100_000 + b"]" * 100_000
    return {
        "config: YAML alias bomb (609 bytes)": config(alias_bomb()),
        "config: just !!int": config("!!int"),
        "config: nested 100,000 deep": config("[" * 100_000),
        "config: Latin-1 bytes": config(b"project_name: caf\xe9\n"),
        "data: own dataset, format synthetic": user_dataset,
        "data: PNG declaring 13000x13000": dataset({"captions.jsonl": b'{"image": "big.png", "captions": ["x"], '
                                                                       b'"split": "train"}\n',
                                                     "big.png": png_header_only(13000, 13000)}),
        "data: tar member of 2 GiB": lambda d: (sparse_tar(d / "shard-000000.tar"),
                                                (["data", "inspect", str(d / "shard-000000.tar")],
                                                 [d / "shard-000000.tar"]))[1],
        "data: COCO with wrong types": dataset({"annotations/captions_train2017.json":
                                                b'{"images": {"id": 1}, "annotations": 5}'}, folders=("train2017",)),
        "data: COCO nested 100,000 deep": dataset({"annotations/captions_train2017.json": deep_json},
                                                  folders=("train2017",)),
        "data: Karpathy with wrong types": dataset({"dataset_flickr30k.json": b'{"images": [{"filename": 3}]}'},
                                                   fmt="flickr", folders=("flickr30k-images",)),
        "data: CSV field of 200,000 chars": dataset({"data.csv": b"filepath,title\na.png," + b"x" * 200_000 + b"\n"},
                                                    "data.csv"),
        "data: JSONL lines of wrong types": dataset({"captions.jsonl": b'[1, 2]\n42\nnull\n{"image": 5}\n'},
                                                    "captions.jsonl"),
        "data: JSONL in Latin-1": dataset({"captions.jsonl": b'{"image": "a.png", "caption": "caf\xe9"}\n'},
                                          "captions.jsonl"),
        "tokenizer: catastrophic regex": run_copy(tokenizer_with(
            lambda t: t.__setitem__("pre_tokenizer", {"type": "regex", "pattern": "(a|aa)+$"}))),
        "tokenizer: negative id": run_copy(tokenizer_with(lambda t: t["model"]["vocab"].update({"evil": -1}))),
        "tokenizer: Latin-1 bytes": run_copy(lambda run: ((run / "tokenizer.json").write_bytes(b'{"x": "\xe9"}'),
                                                          [run / "tokenizer.json"])[1]),
        "checkpoint: sidecar not an object": run_copy(sidecar_list),
        "checkpoint: another architecture": run_copy(other_architecture),
        "checkpoint: manifest in Latin-1": run_copy(lambda run: (
            (run / "checkpoints" / "manifest.json").write_bytes(b'{"\xe9"}'), [run / "checkpoints" / "manifest.json"])[1]),
        "output: a file where the folder should be": lambda d: ((d / "out").write_text("a file"),
                                                                 (["train", str(root / "tiny.yaml"), "--output-dir",
                                                                   str(d / "out" / "run")], [d / "out"]))[1],
    }


# A bad image inside a dataset is skipped, counted and reported (exit 0), as broken images always are;
# every other case must stop with one line and exit 1.
EXPECT = {"data: PNG declaring 13000x13000": (0, "too large")}


def digest(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "absent" for p in paths}


def run_case(argv: list[str], timeout: float = 60.0, stdin: bytes | None = None,
             cwd: Path | None = None) -> tuple[int, float, int, str]:
    """Run `mie ARGV` (``stdin`` fed from a file, in ``cwd``); return (exit status, seconds, peak RSS bytes of
    that child, its output)."""
    with tempfile.TemporaryFile(mode="w+", errors="replace") as err, tempfile.TemporaryFile() as feed:
        feed.write(stdin or b"")
        feed.seek(0)
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "mie", *argv], stdout=err, stderr=err,
                                stdin=feed if stdin is not None else subprocess.DEVNULL, cwd=cwd)
        while True:  # os.wait4 reports this child's own peak memory
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, seconds, usage.ru_maxrss * 1024, err.read()


def report(name: str, width: int, code: int, seconds: float, rss: int, err: str, untouched: bool,
           want_code: int = 1, want_text: str | None = None) -> bool:
    """Print one row for a case and return whether it passed: exit ``want_code``, one ``mie ...`` line (or
    ``want_text`` in the output), untouched files, within :data:`LIMIT_S` and :data:`LIMIT_BYTES`."""
    lines = [line for line in err.splitlines() if line.strip()]
    if want_text is None:
        one_line = len(lines) == 1 and lines[0].startswith("mie ") and "Traceback" not in err
    else:
        one_line = want_text in err and "Traceback" not in err
        lines = [line for line in lines if want_text in line][-1:] or lines
    ok = code == want_code and one_line and untouched and seconds < LIMIT_S and rss < LIMIT_BYTES
    print(f"{name:{width}s} {code:4d} {seconds:8.2f} {rss / 2**20:8.0f}  {str(one_line):8s}  {str(untouched):9s}  "
          f"{'ok ' if ok else 'FAIL'} {lines[-1][:150] if lines else ''}", flush=True)
    return ok


def main() -> int:
    """Build each hostile input, run `mie` on it, print one row per case; exit 1 if any case fails."""
    root = Path(tempfile.mkdtemp(prefix="mie-hostile-"))
    (root / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "path": str(root / "shapes")}}))
    finished = root / "finished"
    code, *_ = run_case(["train", str(root / "tiny.yaml"), "--output-dir", str(finished), "-q"])
    assert code == 0, "the tiny reference run failed"
    failures = 0
    print(f"{'case':45s} exit  seconds  peak MB  one line  untouched  message")
    for i, (name, build) in enumerate(cases(root, finished).items()):
        d = root / f"case{i}"
        d.mkdir()
        argv, files = build(d)
        before = digest(files)
        code, seconds, rss, err = run_case(argv)
        want_code, want_text = EXPECT.get(name, (1, None))
        failures += not report(name, 45, code, seconds, rss, err, digest(files) == before, want_code, want_text)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{len(cases(root, finished)) - failures} of {len(cases(root, finished))} cases pass")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
