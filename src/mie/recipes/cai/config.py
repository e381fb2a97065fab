"""The cai recipe's config: a base model, prompt sets, and the settings of each phase.

Phases: ``sl`` (critique-revision data, then supervised fine-tuning) and ``rl`` (pairs sampled from the
SL model, AI feedback, a reward model, DPO and PPO). Every training phase is a :class:`PhaseConfig`
(a trainer stage: epochs, steps, batch, lr, freeze; and adapters); the rest of the trainer's settings (seed, device, precision,
optimizer, schedule, logging) come from the top level, shared by all phases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mie.config import FRACTION, NON_NEGATIVE, POSITIVE, ConfigError, Rule, one_of
from mie.models.budget import MAX_BATCH, MAX_CANDIDATES, check_bound, check_training
from mie.models.lora import LoRAConfig
from mie.recipes.lm.config import LMConfig, base_architecture
from mie.recipes.lm.config import check_budget as check_lm_budget
from mie.safety.cai.critique import CritiqueSettings
from mie.safety.cai.feedback import HARMFUL_QUESTIONS, HELPFUL_QUESTIONS, ReplyQuestion
from mie.training.config import StageConfig, TrainerConfig


@dataclass
class PromptsConfig:
    """Which prompts train and which measure: counts per split and kind (0 = all) of the prompt file."""

    RULES: ClassVar[dict[str, Rule]] = {"train_harmful": NON_NEGATIVE, "train_helpful": NON_NEGATIVE,
                                        "test_harmful": NON_NEGATIVE, "test_helpful": NON_NEGATIVE}

    path: str = ""  # empty = the packaged mie/safety/data/cai_prompts.jsonl
    train_harmful: int = 0
    train_helpful: int = 0
    test_harmful: int = 0
    test_helpful: int = 0


@dataclass
class PhaseConfig(StageConfig):
    """One training phase on ``BaseTrainer``: a stage (its length in ``epochs`` or ``steps``, batch, lr,
    ``freeze``, ``lr_multipliers``, ``grad_accum_steps``) with its warmup, row length, validation share
    and adapters.

    ``lora.r: 0`` trains all weights; otherwise only the adapters (and a reward or value head).
    ``max_steps`` is the earlier name of ``steps``, kept so that configs written before still load.
    """

    RULES: ClassVar[dict[str, Rule]] = {**StageConfig.RULES, "max_steps": NON_NEGATIVE, "batch_size": POSITIVE,
                                        "lr": POSITIVE, "warmup_steps": NON_NEGATIVE, "max_len": POSITIVE,
                                        "val_fraction": FRACTION}

    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-4
    max_steps: int = 0  # the earlier name of steps (0 = the epochs decide)
    warmup_steps: int = 0
    max_len: int = 256  # tokens of prompt + response per row
    val_fraction: float = 0.1  # of the phase's rows, held out for its validation metrics
    lora: LoRAConfig = field(default_factory=LoRAConfig)

    def __post_init__(self) -> None:
        if self.max_steps:  # moved to steps, so that one field says how long the phase is
            if self.steps and self.steps != self.max_steps:
                raise ConfigError(f"steps {self.steps} and max_steps {self.max_steps} disagree",
                                  fix="set steps only (max_steps is its earlier name)")
            self.steps, self.max_steps = self.max_steps, 0


@dataclass
class GenerationConfig:
    """How the policies answer (SL data, sampled pairs, measurement)."""

    RULES: ClassVar[dict[str, Rule]] = {"max_new_tokens": POSITIVE, "batch_size": POSITIVE,
                                        "dtype": one_of("float32", "bfloat16")}

    max_new_tokens: int = 64
    batch_size: int = 16
    dtype: str = "float32"  # bfloat16: generate and score with a bf16 copy (about 1.5x faster on recent CPUs)
    system: str = ""  # a system message before every prompt (empty = the chat template's default)


@dataclass
class SLConfig:
    """SL-CAI: the critique-revision generation and the fine-tuning on its final revisions."""

    generation: CritiqueSettings = field(default_factory=CritiqueSettings)
    sft: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=2, lr=2e-4))


@dataclass
class PPOConfig(PhaseConfig):
    """PPO on the SL policy, rewarded by the reward model minus ``kl_coef`` x KL to the SL model."""

    RULES: ClassVar[dict[str, Rule]] = {**PhaseConfig.RULES, "kl_coef": NON_NEGATIVE, "clip": POSITIVE,
                                        "temperature": POSITIVE, "max_new_tokens": POSITIVE}

    kl_coef: float = 0.05
    clip: float = 0.2
    vf_coef: float = 0.5
    temperature: float = 1.0
    max_new_tokens: int = 48


def _is_feedback_model(value: str) -> bool:
    from mie.pretrained.registry import MODELS

    return value in ("base", "sl") or value in MODELS


_MARGIN: Rule = (lambda v: 0.0 <= v < 0.5, "in [0, 0.5)")
_QUESTIONS: Rule = (lambda v: len(v) > 0 and all(q.ask.strip() for q in v), "a non-empty list of {ask, yes_is_good}")
_FEEDBACK_MODEL: Rule = (_is_feedback_model, "base | sl | a pretrained model's name (qwen2.5-coder-1.5b-instruct, ...)")


@dataclass
class RLConfig:
    """RL-CAI: sampled pairs, AI feedback, a reward model, DPO and PPO."""

    RULES: ClassVar[dict[str, Rule]] = {"temperature": POSITIVE, "principles_per_pair": NON_NEGATIVE,
                                        "evaluator_weight": FRACTION, "feedback_model": _FEEDBACK_MODEL,
                                        "min_margin": _MARGIN, "harmful_questions": _QUESTIONS,
                                        "helpful_questions": _QUESTIONS,
                                        "feedback_mode": one_of("pairwise", "pointwise"),
                                        "dpo_beta": POSITIVE}

    temperature: float = 1.0  # sampling the two answers of a pair
    feedback_model: str = "sl"  # base | sl | a pretrained name (a stronger judge, e.g. Qwen2.5-Coder): who labels
    principles_per_pair: int = 2  # 0 = every principle
    evaluator_weight: float = 0.0  # share of the safety evaluator's vote in each label
    feedback_mode: str = "pairwise"  # pairwise (both answers in one question, Bai et al.) | pointwise (one at a time)
    # held-out hand-labelled pairs the feedback is checked on: a packaged set (test, the default; dev; val), a
    # file of one's own, or none
    hand_pairs: str = ""
    # A system prompt the second answer of each pair is drawn with (e.g. "be careful"): pairs then hold a plain
    # and a careful answer, as the hand-labelled ones do, and the policy learns the preferred one without it.
    pair_system: str = ""
    min_margin: float = 0.0  # pairs whose label is within this of 0.5 are not trained on (the judge is unsure)
    # pointwise: the yes/no questions asked about each answer of a red-team / a helpful prompt (averaged)
    harmful_questions: list[ReplyQuestion] = field(default_factory=lambda: list(HARMFUL_QUESTIONS))
    helpful_questions: list[ReplyQuestion] = field(default_factory=lambda: list(HELPFUL_QUESTIONS))
    reward_model: PhaseConfig = field(default_factory=lambda: PhaseConfig(lr=1e-4, val_fraction=0.2))
    dpo: PhaseConfig = field(default_factory=lambda: PhaseConfig(lr=5e-5, val_fraction=0.2))
    dpo_beta: float = 0.1
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(steps=10, lr=1e-5))


@dataclass
class CAIEvalConfig:
    """The held-out measurement: evaluator methods, the judge's win rate and the KL sample."""

    RULES: ClassVar[dict[str, Rule]] = {"kl_prompts": NON_NEGATIVE}

    methods: list[str] = field(default_factory=lambda: ["auto"])  # auto = rules (+ embeddings when installed)
    win_rate: bool = True  # the feedback model compares each policy's helpful answers with the base's
    kl_prompts: int = 64  # held-out answers the KL to the reference is measured on


@dataclass
class CAIConfig(TrainerConfig):
    """A Constitutional-AI run: ``base_model`` (a pretrained name or an lm run folder), or, when empty, a
    model trained from scratch first with ``pretrain`` (an lm recipe config)."""

    RULES: ClassVar[dict[str, Rule]] = {**TrainerConfig.RULES, "recipe": one_of("cai")}

    recipe: str = "cai"
    best_metric: str = "val/loss"
    best_mode: str = "min"
    base_model: str = "smollm2-135m-instruct"
    pretrain: LMConfig = field(default_factory=LMConfig)
    constitution: str = ""  # a constitution YAML (empty = the packaged default)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sl: SLConfig = field(default_factory=SLConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    evaluation: CAIEvalConfig = field(default_factory=CAIEvalConfig)


def check_config(config: CAIConfig) -> None:
    """Refuse, in one line, what the dataclass rules cannot see."""
    from mie.safety.methods import resolve_methods

    if not config.base_model and not (config.pretrain.data.files or config.pretrain.data.fallback_files):
        raise ConfigError("base_model is empty and pretrain.data.files names no text to train one from scratch",
                          fix="set base_model: smollm2-135m-instruct (or an lm run folder), or pretrain.data.files")
    if config.stages:
        raise ConfigError("stages: a cai run has its own phases (sl.sft, rl.reward_model, rl.dpo, rl.ppo); "
                          "remove stages")
    for name, phase in {"sl.sft": config.sl.sft, "rl.reward_model": config.rl.reward_model, "rl.dpo": config.rl.dpo,
                        "rl.ppo": config.rl.ppo}.items():
        if phase.loss is not None or phase.schedule is not None:
            raise ConfigError(f"{name}: a cai phase has its own loss and the top-level schedule; "
                              "remove its loss and schedule (warmup_steps sets its warmup)")
    if config.sl.generation.rounds < 1 or config.sl.generation.candidates < 1:
        raise ConfigError("sl.generation: rounds and candidates must both be >= 1")
    check_budget(config)
    # Last: it may warn (embeddings not installed), and a refused config should print its one line only.
    config.evaluation.methods = resolve_methods(config.evaluation.methods, where="evaluation.methods")


MAX_ROUNDS = 16  # critique-revision rounds: each adds a critique and a revision to the conversation


def check_budget(config: CAIConfig) -> None:
    """Refuse, before the base model is loaded or trained, what cannot run: more candidates, rounds or rows
    than the bounds, generation lengths past the model's context, phases whose training step (the
    trained copy, its frozen references and the activations) exceeds the memory available."""
    model = base_architecture(config.base_model) if config.base_model else None
    if model is None:
        if config.base_model:
            return  # neither a known name nor a run folder: loading it says so in one line
        model = check_lm_budget(config.pretrain, prefix="pretrain.")
    context = model.max_seq_len
    sl = config.sl.generation
    check_bound(sl.candidates, MAX_CANDIDATES, "sl.generation.candidates",
                fix=f"use at most {MAX_CANDIDATES} (1 to 4 is usual: each is a full generation per prompt)")
    check_bound(sl.rounds, MAX_ROUNDS, "sl.generation.rounds")
    phases = {"sl.sft": config.sl.sft, "rl.reward_model": config.rl.reward_model, "rl.dpo": config.rl.dpo,
              "rl.ppo": config.rl.ppo}
    lengths = {"generation.max_new_tokens": config.generation.max_new_tokens,
               "rl.ppo.max_new_tokens": config.rl.ppo.max_new_tokens,
               "sl.generation.answer_tokens": sl.answer_tokens,
               "sl.generation": sl.answer_tokens + sl.rounds * (sl.critique_tokens + sl.revision_tokens),
               **{f"{name}.max_len": phase.max_len for name, phase in phases.items()}}
    for key, tokens in lengths.items():
        check_bound(tokens, context - 1, key, f"(the model's context is {context:,} tokens)",
                    fix=f"use at most {context - 1:,}")
    check_bound(config.generation.batch_size, MAX_BATCH, "generation.batch_size")
    for name, phase in phases.items():
        # Pairs (reward model, DPO) are two rows each; DPO and PPO hold frozen references beside the policy.
        rows = phase.batch_size * (2 if name in ("rl.reward_model", "rl.dpo") else 1)
        frozen = {"rl.dpo": 1, "rl.ppo": 2}.get(name, 0) + 2  # and the base and SL models the run keeps
        tokens = phase.max_len + (config.rl.ppo.max_new_tokens if name == "rl.ppo" else 0)
        check_training(model, f"{name}.batch_size", rows, min(tokens, context), frozen_copies=frozen,
                       fix=f"lower {name}.batch_size or {name}.max_len", precision=config.precision)
