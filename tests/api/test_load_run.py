"""`mie.load_run`: a finished run as a notebook's model, checked against the model's own towers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import mie
from mie.config import ConfigError
from mie.errors import CheckpointError
from mie.io import load_weights


@pytest.fixture(scope="module")
def run(tiny_run):
    return mie.load_run(tiny_run)


def _test_images(tiny_run: Path) -> list[Path]:
    return sorted((tiny_run.parents[1] / "data" / "shapes" / "images" / "test").glob("*.png"))


def test_import_mie_and_help_do_not_import_torch():
    code = ("import sys, mie, mie.cli\n"
            "assert 'load_run' in dir(mie) and 'torch' not in sys.modules\n"
            "try:\n    mie.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mie.nope  # noqa: B018


def test_encode_text_equals_the_text_tower_on_hand_tokenized_ids(run):
    texts = ["a red circle", "two blue squares and a green triangle " * 5, ""]
    tok, ctx = run.tokenizer, run.config.model.context_length
    ids = torch.full((len(texts), ctx), tok.pad_id, dtype=torch.long)
    for row, text in enumerate(texts):
        body = [tok.bos_id, *tok.encode(text)[: ctx - 2], tok.eos_id]
        ids[row, : len(body)] = torch.tensor(body)
    with torch.no_grad():
        expected = F.normalize(run.model.text_projection(run.model.text(ids)), dim=-1)
    got = run.encode_text(texts)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(run.encode_text("a red circle"), got[:1])
    torch.testing.assert_close(run.encode_text(texts, batch_size=1), got)


def test_encode_image_takes_paths_pil_images_and_tensor_batches(run, tiny_run):
    paths = _test_images(tiny_run)[:3]
    pil = [Image.open(p) for p in paths]
    batch = torch.stack([run.transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        expected = F.normalize(run.model.image_projection(run.model.visual(batch)), dim=-1)
    torch.testing.assert_close(run.encode_image(paths), expected)
    torch.testing.assert_close(run.encode_image([str(p) for p in paths]), expected)
    torch.testing.assert_close(run.encode_image(pil, batch_size=2), expected)
    torch.testing.assert_close(run.encode_image(batch), expected)
    torch.testing.assert_close(run.encode_image(pil[0]), expected[:1])
    assert batch.shape == (3, 3, 16, 16)


def test_similarity_is_cosine_and_probs_are_open_clips_softmax(run, tiny_run):
    image, captions = _test_images(tiny_run)[0], ["a red circle", "a blue square", "a green star"]
    cos = run.encode_image([image]) @ run.encode_text(captions).T
    torch.testing.assert_close(run.similarity([image], captions), cos)
    probs = run.similarity([image], captions, probs=True)
    torch.testing.assert_close(probs, (100 * cos).softmax(dim=-1))
    assert probs.sum().item() == pytest.approx(1.0)
    learned = math.exp(run.model.logit_scale.item())
    torch.testing.assert_close(run.similarity([image], captions, probs=True, scale=None),
                               (learned * cos).softmax(dim=-1))


def test_checkpoint_last_loads_the_last_weights_and_reads_only(tiny_run, snapshot_of):
    before = snapshot_of(tiny_run)
    last = mie.load_run(tiny_run, checkpoint="last")
    assert last.checkpoint.name == "last.safetensors" and last.device == torch.device("cpu")
    assert repr(last).startswith(f"Run({str(tiny_run)!r}, checkpoint='last.safetensors', device='cpu'")
    state, _ = load_weights(tiny_run / "checkpoints" / "last.safetensors")
    for name, value in last.model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert mie.load_run(tiny_run).checkpoint.name == "best.safetensors"
    with pytest.raises(ConfigError, match="unknown checkpoint 'final'"):
        mie.load_run(tiny_run, checkpoint="final")
    assert snapshot_of(tiny_run) == before


def test_a_folder_without_checkpoints_is_a_one_line_error(tiny_run, tmp_path):
    (tmp_path / "config.yaml").write_bytes((tiny_run / "config.yaml").read_bytes())
    (tmp_path / "tokenizer.json").write_bytes((tiny_run / "tokenizer.json").read_bytes())
    with pytest.raises(CheckpointError, match="no checkpoints/best.safetensors or checkpoints/last.safetensors"):
        mie.load_run(tmp_path)


def test_embed_split_agrees_with_encode_and_search_ranks_by_dot_product(run, tiny_run):
    split = run.embed_split()
    assert split.split == "test" and len(split.paths) == 8 and len(split.captions) == 40
    torch.testing.assert_close(split.image_embeds, run.encode_image(split.paths))
    torch.testing.assert_close(split.text_embeds, run.encode_text(split.captions))
    assert split.text_image_index.tolist() == [i for i in range(8) for _ in range(5)]

    hits = run.search("a red circle", k=4)
    query = run.encode_text(["a red circle"])[0]
    scores = [h.score for h in hits]
    assert len(hits) == 4 and scores == sorted(scores, reverse=True)
    for hit in hits:
        assert hit.path == split.paths[hit.index]
        assert hit.score == pytest.approx(float(split.image_embeds[hit.index] @ query), abs=1e-6)
    assert min(scores) >= float((split.image_embeds @ query).sort(descending=True).values[3]) - 1e-6

    folder = run.search("a red circle", images=tiny_run.parents[1] / "data" / "shapes" / "images" / "val", k=100)
    assert len(folder) == 8 and all(Path(h.path).parent.name == "val" for h in folder)
    with pytest.raises(ConfigError, match="k must be at least 1"):
        run.search("x", k=0)

