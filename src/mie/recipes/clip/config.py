"""The clip recipe's config: the trainer's settings (top level) plus model, data, tokenizer, loss."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from mie.config import FRACTION, NON_NEGATIVE, POSITIVE, ConfigError, Rule, one_of
from mie.data.caption_negatives import CaptionSwapper
from mie.data.config import DataConfig
from mie.losses.config import LossConfig
from mie.models.budget import BOUNDS, MAX_BATCH, check_bound, check_training, check_workers
from mie.models.fusion import FusionConfig
from mie.models.multimodal import DualEncoderConfig
from mie.tokenization.config import TokenizerConfig
from mie.training.config import TrainerConfig
from mie.training.tasks import check_task_loss


@dataclass
class RerankConfig:
    """An image–text matching head trained after the dual encoder (frozen, best checkpoint) on hard
    negatives, re-ranking each query's top ``k`` in the report (``mie.recipes.clip.rerank``)."""

    RULES: ClassVar[dict[str, Rule]] = {"k": POSITIVE, "epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE,
                                        "negatives": one_of("softmax", "hardest"), "temperature": POSITIVE,
                                        "temperature_start": NON_NEGATIVE, "novel_pairs": NON_NEGATIVE,
                                        "max_minutes": NON_NEGATIVE, "weight_decay": FRACTION,
                                        "sim_weight": NON_NEGATIVE, "batches": one_of("random", "neighbours"),
                                        "group_size": POSITIVE, "grounding": NON_NEGATIVE}

    enabled: bool = False
    k: int = 10  # candidates re-ranked per query
    fusion: FusionConfig = field(default_factory=FusionConfig)  # type: cross | gated | bidirectional | coattention
    epochs: int = 3
    batch_size: int = 128
    lr: float = 5.0e-4
    weight_decay: float = 0.05
    negatives: str = "softmax"  # softmax: sampled from softmax(sim / temperature); hardest: the top one
    temperature: float = 0.05
    #: > 0 (softmax negatives): the temperature starts here and anneals geometrically to ``temperature``
    #: over the run (easy negatives first); 0 = ``temperature`` throughout
    temperature_start: float = 0.0
    max_minutes: float = 0.0  # 0 = no budget for the re-ranker's training
    sim_weight: float = 1.0  # ranking score = ITM logit + sim_weight x cosine similarity (BLIP); 0 = ITM alone
    #: when given, sim_weight is the one of these with the best re-ranked mean R@1 on data.val_split
    sim_weights: list[float] = field(default_factory=list)
    #: neighbours: training batches of runs of group_size images that are nearest neighbours under the
    #: frozen dual encoder, so the mined negatives are its own top-k confusions; random: shuffled
    batches: str = "random"
    group_size: int = 16
    #: > 0 (shapes data): this many colour-shape pairs are kept from the head's training images, and
    #: sim_weight is chosen on the val images with and without them (``mie.recipes.clip.rerank_novel``),
    #: as test_heldout's pairs are new to the head
    novel_pairs: int = 0
    #: phrase grounding (``mie.evaluation.grounding``; needs data.caption_tags): the ranking score becomes
    #: ITM logit + sim_weight x (cosine + grounding x the caption phrases' best-patch cosines); 0 = off
    grounding: float = 0.0
    #: when given (with sim_weights), grounding is chosen on val together with sim_weight
    groundings: list[float] = field(default_factory=list)
    #: the phrases grounding scores; empty = data.caption_tags as written, all of them (training keeps only
    #: those its captions use, but a phrase none uses, a held-out pair, is scored by composition here)
    phrases: list[str] = field(default_factory=list)


@dataclass
class ClipConfig(TrainerConfig):
    """A CLIP-style run: ``ClipConfig(project_name="x", output_dir="out")`` is complete with defaults."""

    RULES: ClassVar[dict[str, Rule]] = {**TrainerConfig.RULES, "recipe": one_of("clip"),
                                        "group_batches": one_of("none", "colors", "colors_sizes"), "group_size": POSITIVE,
                                        "group_mixed": FRACTION}

    recipe: str = "clip"
    model: DualEncoderConfig = field(default_factory=DualEncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    #: weights to start from (a ``.safetensors`` of an earlier run with the same model section)
    init_checkpoint: str = ""
    rerank: RerankConfig = field(default_factory=RerankConfig)
    #: ``colors``: training batches hold runs of ``group_size`` images with the same colours (shapes data),
    #: so colour alone cannot tell a run's pairs apart (``mie.data.samplers.GroupedBatchSampler``);
    #: ``colors_sizes``: the same colours in the same sizes (size cannot tell them apart either)
    group_batches: str = "none"
    group_size: int = 16
    group_mixed: float = 0.0  # fraction of each batch drawn at random instead


def check_config(config: ClipConfig) -> None:
    """Refuse, in one line, a loss (top level or a stage's) that an image–text batch cannot feed, and
    caption swaps or tags that no loss would use (each loss is built once, by ``check_task_loss``)."""
    dim, tags = config.model.embed_dim, len(config.data.caption_tags)
    losses = [("loss", config.loss)] + [(f"stages[{i}].loss", s.loss) for i, s in enumerate(config.stages)
                                        if s.loss is not None]
    try:
        built = [(where, check_task_loss(loss, dim, where, tag_names=config.data.caption_tags))
                 for where, loss in losses]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    accepted = set().union(*(loss.accepted_inputs() for _, loss in built))
    for where, loss in built:
        if not tags and loss.required_inputs() & {"tag_targets", "tag_text_embeds"}:
            raise ConfigError("this loss scores images against the caption tags, and none are listed",
                              where=where, fix="list the words or phrases in data.caption_tags, e.g. "
                                               "--set 'data.caption_tags=[circle,square,red circle]'")
    if config.data.caption_swaps:
        CaptionSwapper(config.data.caption_swaps)  # a malformed group is refused here, before any work
    for key, kind in (("caption_swaps", "negative_text_embeds"), ("caption_tags", "tag_targets")):
        if not getattr(config.data, key):
            continue
        if kind not in accepted:
            names = ", ".join(f"{where} {loss.name!r}" for where, loss in losses)
            raise ConfigError(f"no loss uses it ({names}), so it would only cost time", where=f"data.{key}",
                              fix=f"use a loss that takes {kind} (clip for caption_swaps, caption_tags or "
                                  f"tag_match for caption_tags), or set data.{key}: []")
    if config.rerank.temperature_start and config.rerank.negatives != "softmax":
        raise ConfigError("anneals the sampling temperature, and hardest negatives are not sampled",
                          where="rerank.temperature_start", fix="use rerank.negatives: softmax, or set it to 0")
    if config.rerank.enabled and (config.rerank.grounding or any(config.rerank.groundings)) \
            and not (config.rerank.phrases or config.data.caption_tags):
        raise ConfigError("scores a caption's phrases, and neither rerank.phrases nor data.caption_tags lists any",
                          where="rerank.grounding", fix="list the phrases in data.caption_tags, or set "
                                                        "rerank.grounding: 0 and rerank.groundings: []")
    if any(g < 0 for g in config.rerank.groundings):
        raise ConfigError(f"must be >= 0, got {config.rerank.groundings}", where="rerank.groundings",
                          fix="use weights >= 0 (0 = no grounding)")
    check_budget(config)


MAX_IMAGES = 10_000_000  # images the synthetic generator may be asked for per split


def check_budget(config: ClipConfig) -> None:
    """Refuse, before data is read or generated or a model built: worker processes past this machine's
    cores, batches, vocabularies or generated splits past the bounds, and a training step (weights,
    gradients, AdamW, activations of the largest batch) past the memory available."""
    data = config.data
    check_workers(data.num_workers, "data.num_workers")
    if data.format == "synthetic" and isinstance(data.format_options.get("workers"), int):
        check_workers(data.format_options["workers"], "data.format_options.workers")
    synthetic = data.synthetic
    for name in ("num_train", "num_val", "num_test", "num_heldout"):
        check_bound(getattr(synthetic, name), MAX_IMAGES, f"data.synthetic.{name}")
    check_bound(synthetic.image_size, BOUNDS["image_size"], "data.synthetic.image_size")
    check_bound(config.tokenizer.vocab_size, BOUNDS["vocab"], "tokenizer.vocab_size")
    check_bound(config.rerank.batch_size, MAX_BATCH, "rerank.batch_size")
    check_bound(config.rerank.k, 1000, "rerank.k")
    rows = max([data.batch_size] + [stage.batch_size for stage in config.stages])
    key = "data.batch_size" if rows == data.batch_size else "stages.batch_size"
    vocab = config.model.vocab_size or config.tokenizer.vocab_size  # 0: taken from the tokenizer
    check_training(dataclasses.replace(config.model, vocab_size=vocab), key, rows,
                   fix=f"lower {key} or the model's size", precision=config.precision)
