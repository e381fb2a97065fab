"""``mie safety train``: the whole Constitutional-AI pipeline of one config, phase by phase, in one run folder.

    base model ─► SL-CAI data (sl_data.jsonl) ─► SFT (sft/) ─► SL model
    SL model ─► sampled pairs + AI feedback (pairs.jsonl) ─► reward model (reward_model/)
             ─► DPO (dpo/) and PPO (ppo/, rewarded by the reward model)
    every policy ─► held-out measurement (eval/<policy>.json) ─► report.md, results.json, plots/

Each step leaves its output in the run folder; ``--resume`` skips finished steps and resumes an
interrupted training phase from its last checkpoint, so a killed run loses at most one step's work.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mie.errors import ConfigError
from mie.io.atomic import is_temporary_name
from mie.io.cache import read_json, read_jsonl, save_json_atomic
from mie.io.ownership import claim_run_folder, create_folder, has_marker, write_marker
from mie.recipes.cai import phases
from mie.recipes.cai.batches import pair_rows, sft_rows, split_rows
from mie.recipes.cai.config import CAIConfig
from mie.recipes.run_dir import is_legacy_run, save_run_config
from mie.safety.cai.prompts import load_cai_prompts
from mie.safety.targets import ChatTarget
from mie.training.threads import set_threads

log = logging.getLogger(__name__)
PHASES = ("sl", "rl", "all")
OUTPUTS = ("base", "sl_data.jsonl", "sft", "pairs.jsonl", "feedback_check.json", "reward_model", "dpo", "ppo",
           "eval", "plots", "report.md", "results.json", "config.yaml")


@dataclass
class CAIRunResult:
    """What a cai run measured: per policy (base, sl, dpo, ppo) its held-out figures, plus each phase's
    summary and the wall time."""

    run_dir: Path
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_time_s: float = 0.0  # of this invocation
    earlier_wall_time_s: float = 0.0  # of the invocations before (a resumed run)

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """The measured policies (what ``mie train`` checks before printing)."""
        return self.policies


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    import json

    from mie.io.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in read_jsonl(path)]


def _is_legacy_cai_run(folder: Path) -> bool:
    """A cai run written before the run marker (issue 26): its config.yaml, its base model's run (or
    measurement) and nothing a cai run does not write; such a folder may still be resumed."""
    if not (folder / "config.yaml").is_file() or not (
            is_legacy_run(folder / "base") or has_marker(folder / "base") or (folder / "eval" / "base.json").is_file()):
        return False
    return all(entry.name in OUTPUTS or is_temporary_name(entry.name) for entry in folder.iterdir())


def _start(config: CAIConfig, resume: bool, overwrite: bool, phase: str) -> Path:
    """Create or reopen the run folder: a fresh run refuses a folder that holds one unless ``overwrite``, and
    any folder that is neither empty nor a run of ours (:func:`~mie.io.ownership.claim_run_folder`)."""
    if phase not in PHASES:
        raise ConfigError(f"unknown phase {phase!r}", where="--phase", fix=f"use one of {', '.join(PHASES)}")
    run_dir = Path(config.output_dir)
    claim_run_folder(run_dir, "output_dir", legacy=_is_legacy_cai_run, overwrite=overwrite)
    started = run_dir.is_dir() and any((run_dir / name).exists() for name in OUTPUTS if name != "config.yaml")
    if phase == "rl":
        if phases.phase_done(run_dir / "sft") is None:
            raise ConfigError("holds no finished SL phase", where=f"output_dir {run_dir}",
                              fix="run --phase sl (or --phase all) first")
        resume = True
    if started and not overwrite and not resume:
        raise ConfigError("already holds a cai run", where=f"output_dir {run_dir}",
                          fix="pass --resume to continue it, --overwrite to start again, or choose another output_dir")
    create_folder(run_dir, "output_dir", anywhere=True)
    write_marker(run_dir, "cai")  # first: from here on the folder is recognisably ours
    if started and overwrite:
        for name in OUTPUTS:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    return run_dir


def _base(config: CAIConfig, run_dir: Path, resume: bool, quiet: bool) -> tuple[Any, Any]:
    """The base model and tokenizer: ``base_model``, or an lm run trained from ``pretrain`` into ``base/``."""
    import dataclasses

    from mie.pretrained.loading import load_language_model, load_lm_run
    from mie.recipes.lm import train as train_lm

    if config.base_model:
        model, tokenizer = load_language_model(config.base_model, where="base_model")
        return model.float().eval(), tokenizer
    folder = run_dir / "base"
    if not (folder / "results.json").is_file():
        log.info("training the base model from scratch into %s", folder)
        pretrain = dataclasses.replace(config.pretrain, output_dir=str(folder), device=config.device,
                                       threads=config.pretrain.threads or config.threads)
        has_state = (folder / "checkpoints").is_dir()
        train_lm(pretrain, resume=folder if resume and has_state else None, quiet=quiet, overwrite=not resume)
    model, tokenizer = load_lm_run(folder, "last")
    return model.float().eval(), tokenizer


class Pipeline:
    """One cai run: the shared pieces (base model, chat format, evaluator, prompts) and its steps."""

    def __init__(self, config: CAIConfig, run_dir: Path, resume: bool, quiet: bool) -> None:
        from mie.safety.constitution import ConstitutionalFramework
        from mie.safety.evaluator import SafetyEvaluator

        self.config, self.run_dir, self.resume, self.quiet = config, run_dir, resume, quiet
        self.framework = (ConstitutionalFramework.from_yaml(config.constitution) if config.constitution
                          else ConstitutionalFramework.default())
        self.base, self.tokenizer = _base(config, run_dir, resume, quiet)
        self.evaluator = SafetyEvaluator.create(tuple(config.evaluation.methods), self.framework)
        p = config.prompts
        self.train_harmful = load_cai_prompts(p.path, "train", "harmful", p.train_harmful)
        self.train_helpful = load_cai_prompts(p.path, "train", "helpful", p.train_helpful)
        self.test_harmful = [x.prompt for x in load_cai_prompts(p.path, "test", "harmful", p.test_harmful)]
        self.test_helpful = [x.prompt for x in load_cai_prompts(p.path, "test", "helpful", p.test_helpful)]
        self.pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        self.result = CAIRunResult(run_dir)
        previous = run_dir / "results.json"
        if resume and previous.is_file():  # a resumed run keeps what earlier invocations measured and took
            earlier = read_json(previous, expect_object=True)
            self.result.phases = dict(earlier.get("phases", {}))
            self.result.earlier_wall_time_s = float(earlier.get("total_wall_time_s", earlier.get("wall_time_s", 0)))
        self._inference: dict[int, tuple[Any, Any]] = {}  # id(model) -> (model, its bf16 copy)
        self._feedback: Any = None  # the feedback labeler, built once (a pretrained judge loads in seconds)

    def inference(self, model: Any) -> Any:
        """``model`` as generation and scoring run it: itself, or a bf16 copy (``generation.dtype``)."""
        if self.config.generation.dtype == "float32":
            return model
        import copy

        import torch

        # One bf16 copy per model, made once: every chat, labeler and KL reference of it shares it.
        if id(model) not in self._inference:
            self._inference[id(model)] = (model, copy.deepcopy(model).to(torch.bfloat16).eval())
        return self._inference[id(model)][1]

    def chat(self, model: Any, system: str = "") -> ChatTarget:
        """``model`` answering in the run's chat format (greedy unless told otherwise), with ``system`` or
        else ``generation.system`` as its system prompt."""
        g = self.config.generation
        return ChatTarget(self.inference(model), self.tokenizer, max_new_tokens=g.max_new_tokens, batch_size=g.batch_size,
                          system=system or g.system or None)

    def feedback_labeler(self, sl_model: Any) -> Any:
        """The labeler of ``rl.feedback_model``: the base model, the SL model, or a pretrained model by name
        (with its own tokenizer)."""
        if self._feedback is None:
            name = self.config.rl.feedback_model
            mode = self.config.rl.feedback_mode
            if name in ("base", "sl"):
                self._feedback = self.labeler(self.base if name == "base" else sl_model, mode=mode)
            else:
                from mie.pretrained.loading import load_language_model

                # fp32, not generation.dtype: without bf16 instructions a 1.5B judge reads 3.6x slower in bf16
                model, tokenizer = load_language_model(name, where="rl.feedback_model")
                self._feedback = self.labeler(model.float().eval(), tokenizer, exact=True, mode=mode)
        return self._feedback

    def labeler(self, model: Any, tokenizer: Any = None, exact: bool = False, mode: str = "pairwise") -> Any:
        """An AI-feedback labeler on ``model`` (its multiple-choice letter probabilities; ``mode`` pairwise or
        pointwise), in ``generation.dtype`` unless ``exact``."""
        from mie.safety.cai.feedback import PointwiseLabeler, PreferenceLabeler

        model, tokenizer = model if exact else self.inference(model), tokenizer or self.tokenizer
        if mode == "pointwise":
            rl = self.config.rl
            return PointwiseLabeler(model, tokenizer, batch_size=self.config.generation.batch_size,
                                    harmful_questions=rl.harmful_questions, helpful_questions=rl.helpful_questions)
        return PreferenceLabeler(model, tokenizer, list(self.framework.active),
                                 per_pair=self.config.rl.principles_per_pair, batch_size=self.config.generation.batch_size,
                                 seed=self.config.seed)

    # ------------------------------------------------------------------ measurement
    def measure(self, name: str, model: Any, reference: Any = None) -> dict[str, Any]:
        """Held-out figures of one policy (cached in ``eval/<name>.json``)."""
        from mie.safety.cai.measure import answers_of, measure_policy

        path = self.run_dir / "eval" / f"{name}.json"
        if path.is_file():
            scores = read_json(path, expect_object=True)
        else:
            start = time.monotonic()
            base = self.result.policies.get("base", {})
            win = self.config.evaluation.win_rate and name != "base" and bool(base)
            scores = measure_policy(self.chat(model), self.test_harmful, self.test_helpful, self.evaluator,
                                    reference=None if reference is None else self.inference(reference), kl_prompts=self.config.evaluation.kl_prompts,
                                    labeler=self.labeler(self.base) if win else None,
                                    base_answers=answers_of(base, "helpful") if win else None)
            scores["seconds"] = round(time.monotonic() - start, 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_json_atomic(path, scores)
        self.result.policies[name] = scores
        log.info("%s: harmful-answer rate %.3f, helpful answered %.3f", name, scores["harmful_answer_rate"],
                 scores["helpful_answered_rate"])
        return scores

    # ------------------------------------------------------------------ SL-CAI
    def sl_data(self) -> list[dict[str, Any]]:
        """Critique-revision records of the red-team prompts and own answers to the helpful ones."""
        from mie.safety.cai.critique import critique_revise, helpful_samples

        path = self.run_dir / "sl_data.jsonl"
        if path.is_file():
            return _read_jsonl(path)
        start = time.monotonic()
        chat = self.chat(self.base)
        records = critique_revise(chat, self.train_harmful, self.framework, self.evaluator,
                                  self.config.sl.generation, seed=self.config.seed)
        records += helpful_samples(chat, self.train_helpful, self.evaluator, self.config.generation.max_new_tokens)
        _write_jsonl(path, records)
        self.result.phases["sl_data"] = {"wall_time_s": round(time.monotonic() - start, 1)}
        return records

    def sl(self) -> Any:
        """SL-CAI: data, supervised fine-tuning, the SL model (measured against the base)."""
        records = self.sl_data()
        chat = self.chat(self.base)
        folder = self.run_dir / "sft"
        accepted = {k: sum(1 for r in records if r["kind"] == k and r.get("accepted")) for k in ("harmful", "helpful")}
        summary = phases.phase_done(folder)
        if summary is None:
            rows = sft_rows(chat, records, self.config.sl.sft.max_len)
            if not rows:
                raise ConfigError("no accepted SL-CAI record to fine-tune on", where=self.run_dir / "sl_data.jsonl",
                                  fix="raise sl.generation.candidates or rounds, or use more prompts")
            train, val = split_rows(rows, self.config.sl.sft.val_fraction)
            summary = phases.train_sft(self.config, self.base, train, val, self.pad_id, folder, self.resume, self.quiet)
        self.result.phases["sft"] = {**summary, "records": len(records), "accepted": accepted}
        sl_model = phases.load_phase_model(self.base, folder)
        self.measure("sl", sl_model, reference=self.base)
        return sl_model

    # ------------------------------------------------------------------ RL-CAI
    def pairs(self, sl_model: Any) -> list[dict[str, Any]]:
        """Two sampled SL answers per training prompt, labelled by AI feedback (``pairs.jsonl``)."""
        from mie.safety.cai.feedback import evaluator_preferences, preference_records, sample_pairs

        path = self.run_dir / "pairs.jsonl"
        if path.is_file():
            return _read_jsonl(path)
        start, rl = time.monotonic(), self.config.rl
        items = [*self.train_harmful, *self.train_helpful]
        prompts, kinds = [p.prompt for p in items], [p.kind for p in items]
        pairs = sample_pairs(self.chat(sl_model), prompts, rl.temperature, self.config.generation.max_new_tokens,
                             self.config.seed, self.chat(sl_model, rl.pair_system) if rl.pair_system else None)
        first, second = [a for a, _ in pairs], [b for _, b in pairs]
        lm = self.feedback_labeler(sl_model).label(prompts, kinds, first, second) if rl.evaluator_weight < 1 else None
        # The evaluator votes on every pair, mixed in or not: its agreement with the feedback model is reported.
        ev = evaluator_preferences(self.evaluator, prompts, kinds, first, second)
        rows = preference_records([p.id for p in items], prompts, kinds, pairs, lm, ev, rl.evaluator_weight)
        _write_jsonl(path, rows)
        self.result.phases["pairs"] = {"wall_time_s": round(time.monotonic() - start, 1), "pairs": len(rows)}
        return rows

    def feedback_check(self, sl_model: Any) -> None:
        """The feedback model's labels against the evaluator's vote on the training pairs, and against a
        person's on held-out hand-labelled pairs (``rl.hand_pairs``; ``feedback_check.json``)."""
        from mie.safety.cai.feedback import hand_agreement, label_summary, load_hand_pairs

        path = self.run_dir / "feedback_check.json"
        if path.is_file():
            check = read_json(path, expect_object=True)
        else:
            start, rl = time.monotonic(), self.config.rl
            check = {"feedback_model": rl.feedback_model, **label_summary(_read_jsonl(self.run_dir / "pairs.jsonl"))}
            if rl.evaluator_weight < 1 and rl.hand_pairs != "none":
                source = rl.hand_pairs or "test"  # a packaged set by name, or a file of one's own
                check["hand"] = hand_agreement(self.feedback_labeler(sl_model), self.evaluator,
                                               load_hand_pairs(source), evaluator_weight=rl.evaluator_weight)
                check["hand"]["set"] = source
            check["wall_time_s"] = round(time.monotonic() - start, 1)
            save_json_atomic(path, check)
        self.result.phases["feedback"] = {k: v for k, v in check.items() if k != "hand"}
        if "hand" in check:
            self.result.phases["feedback"]["hand"] = {k: v for k, v in check["hand"].items() if k != "labels"}

    def rl(self, sl_model: Any) -> None:
        """RL-CAI: pairs, reward model, DPO and PPO, each policy measured against the SL model."""
        from mie.safety.cai.feedback import trainable_pairs

        pairs = self.pairs(sl_model)
        self.feedback_check(sl_model)
        self._feedback = None  # a pretrained judge's weights are not needed past here
        chat = self.chat(sl_model)
        rl = self.config.rl
        labelled = trainable_pairs(pairs, rl.min_margin)
        train, val = split_rows(pair_rows(chat, labelled, rl.reward_model.max_len), rl.reward_model.val_fraction)
        if not train:
            raise ConfigError(f"no preference pair to train on ({len(pairs)} labelled, {len(labelled)} with a label at "
                              f"least rl.min_margin={rl.min_margin:g} from 0.5)", where=self.run_dir / "pairs.jsonl",
                              fix="lower rl.min_margin, raise rl.temperature or use more prompts")
        folder = self.run_dir / "reward_model"
        summary = phases.phase_done(folder) or phases.train_reward_model(
            self.config, sl_model, train, val, self.pad_id, folder, self.resume, self.quiet)
        self.result.phases["reward_model"] = {**summary, "train_pairs": len(train), "val_pairs": len(val),
                                              "pairs_unsure": len(pairs) - len(labelled)}

        folder = self.run_dir / "dpo"
        summary = phases.phase_done(folder) or phases.train_dpo(
            self.config, sl_model, train, val, self.pad_id, folder, self.resume, self.quiet)
        self.result.phases["dpo"] = summary
        self.measure("dpo", phases.load_phase_model(self.base, folder), reference=sl_model)

        folder = self.run_dir / "ppo"
        summary = phases.phase_done(folder)
        if summary is None:
            reward_model = phases.load_reward_model(sl_model, self.run_dir / "reward_model")
            shift, scale = _reward_scale(reward_model, train, self.pad_id)
            prompts = [chat.prompt_ids(p.prompt) for p in [*self.train_harmful, *self.train_helpful]]
            ppo_train, ppo_val = split_rows(prompts, rl.ppo.val_fraction)
            summary = phases.train_ppo(self.config, sl_model, phases.reward_function(reward_model, self.pad_id, shift,
                                                                                     scale),
                                       ppo_train, ppo_val, self.pad_id, chat.stop_ids(), folder, self.resume, self.quiet)
        self.result.phases["ppo"] = summary
        self.measure("ppo", phases.load_ppo_policy(sl_model, folder), reference=sl_model)


def _reward_scale(reward_model: Any, rows: list[dict[str, Any]], pad_id: int) -> tuple[float, float]:
    """Mean and standard deviation of the reward model's scores on the training answers, so PPO's reward
    is standardized and ``kl_coef`` means the same whatever the head's scale."""
    import torch

    from mie.recipes.cai.batches import pair_collate

    scores = []
    with torch.no_grad():
        for start in range(0, len(rows), 16):
            batch = pair_collate(rows[start:start + 16], pad_id)
            for side in ("chosen", "rejected"):
                scores.append(reward_model(batch[f"{side}_ids"], batch[f"{side}_mask"]))
    flat = torch.cat(scores)
    return float(flat.mean()), float(flat.std().clamp_min(1e-3))


def train(config: CAIConfig, resume: str | Path | None = None, quiet: bool = False, overwrite: bool = False,
          phase: str = "all") -> CAIRunResult:
    """Run ``phase`` (sl, rl or all) of the pipeline; measure every policy; write the report."""
    from mie.recipes.cai.report import write_report

    start = time.monotonic()
    rl = config.rl
    # A run whose pairs and feedback check are already labelled (and kept on --resume) needs no judge.
    labelled = not overwrite and all((Path(config.output_dir) / name).is_file()
                                     for name in ("pairs.jsonl", "feedback_check.json"))
    if phase in ("rl", "all") and rl.feedback_model not in ("base", "sl") and rl.evaluator_weight < 1 and not labelled:
        from mie.pretrained.registry import gguf_path

        gguf_path(rl.feedback_model)  # not installed: refused now, not after the SL phase's hour
    set_threads(config.threads)  # now: generating SL data and pairs runs before any phase's trainer
    run_dir = _start(config, resume is not None, overwrite, phase)
    resume_flag = resume is not None or phase == "rl"
    if not (run_dir / "config.yaml").is_file():
        save_run_config(config, run_dir)
    pipeline = Pipeline(config, run_dir, resume_flag, quiet)
    pipeline.measure("base", pipeline.base)
    if phase in ("sl", "all") or phase == "rl":
        sl_model = pipeline.sl()
    if phase in ("rl", "all"):
        pipeline.rl(sl_model)
    pipeline.result.wall_time_s = round(time.monotonic() - start, 1)
    write_report(pipeline.result, config)
    return pipeline.result
