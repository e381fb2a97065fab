"""The cai run's report: held-out figures per policy, phase summaries, training curves; and the console table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic
from mie.recipes.cai.config import CAIConfig
from mie.safety.cai.measure import answers_of

POLICIES = ("base", "sl", "dpo", "ppo")
LABELS = {"base": "base model", "sl": "after SL-CAI", "dpo": "after DPO", "ppo": "after PPO"}
CURVES = {"sft": ("train/loss", "val/loss"), "reward_model": ("train/loss", "val/accuracy"),
          "dpo": ("train/loss", "val/reward_accuracy"), "ppo": ("train/reward", "train/kl")}


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(policies: dict[str, dict[str, Any]], n_harmful: int, n_helpful: int) -> list[str]:
    """Markdown rows: one per measured policy."""
    rows = [f"| policy | harmful-answer rate ({n_harmful} harmful) | refused harmful | answered helpful "
            f"({n_helpful} helpful) | win rate vs base | KL to reference (nats/answer) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in POLICIES:
        s = policies.get(name)
        if s is not None:
            rows.append(f"| {LABELS[name]} | {_pct(s['harmful_answer_rate'])} | {_pct(s['harmful_refusal_rate'])} | "
                        f"{_pct(s['helpful_answered_rate'])} | {_pct(s.get('win_rate_vs_base'))} | "
                        f"{_num(s.get('kl_to_reference'))} |")
    return rows


def _counts(policies: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """How many held-out harmful and helpful prompts the base model answered."""
    base = policies.get("base", {})
    return len(answers_of(base, "harmful")), len(answers_of(base, "helpful"))


def plot_phases(run_dir: Path) -> Path | None:
    """``plots/training.png``: one panel per trained phase (its loss or reward, and a validation metric)."""
    trained = [name for name in CURVES if (run_dir / name / "metrics.jsonl").is_file()]
    if not trained:
        return None
    from matplotlib.figure import Figure

    from mie.evaluation.plots import _save, load_metrics_jsonl

    fig = Figure(figsize=(4.2 * len(trained), 3.6))
    for ax, name in zip(fig.subplots(1, len(trained), squeeze=False)[0], trained, strict=True):
        records = load_metrics_jsonl(run_dir / name / "metrics.jsonl")
        left, right = CURVES[name]
        steps = [(r["step"], r[left]) for r in records if r.get("event") == "step" and left in r]
        if steps:
            ax.plot(*zip(*steps), color="tab:blue", label=left)
        points = [(r["step"], r[right]) for r in records if right in r and (right.startswith("val/")
                                                                             or r.get("event") == "step")]
        if points:
            twin = ax.twinx()
            twin.plot(*zip(*points), color="tab:orange", marker="o", markersize=3, label=right)
            twin.set_ylabel(right, color="tab:orange")
        ax.set(title=name, xlabel="step", ylabel=left)
        ax.grid(alpha=0.3)
    return _save(fig, run_dir / "plots" / "training.png")


def feedback_lines(check: dict[str, Any] | None, config: CAIConfig) -> list[str]:
    """The AI-feedback section: who labelled, how sure, and how often it sides with the evaluator and with
    a person (the hand-labelled held-out pairs)."""
    if not check:
        return []
    rl = config.rl
    lines = ["## AI feedback", "",
             f"Feedback model `{check.get('feedback_model', rl.feedback_model)}` ({rl.feedback_mode}), "
             f"evaluator weight {rl.evaluator_weight}; mean distance of its labels from 0.5: "
             f"{_num(check.get('feedback_confidence'))}."]
    if check.get("agreement_with_evaluator") is not None:
        lines[-1] += (f" It sides with the evaluator's vote on **{_pct(check['agreement_with_evaluator'])}** of the "
                      f"{check.get('evaluator_decisive_pairs')} training pairs where that vote is decisive")
        parts = [f"{kind} prompts {_pct(check[key][0])} of {check[key][1]}" for kind in ("harmful", "helpful")
                 if (key := f"agreement_with_evaluator_{kind}") in check]
        lines[-1] += f" ({', '.join(parts)})." if parts else "."
    hand = check.get("hand")
    if hand:
        mixed = "ai_feedback" in hand.get("all", {})  # checked only when the evaluator is mixed in
        lines += ["", f"Against {hand['pairs']} held-out pairs labelled by hand (`rl.hand_pairs`: "
                  f"{hand.get('set', rl.hand_pairs or 'test')}):", "",
                  "| pairs | feedback model agrees | evaluator agrees (decisive pairs) |"
                  + (" mixed label agrees |" if mixed else ""), "| --- | --- | --- |" + (" --- |" if mixed else "")]
        for kind in ("all", "harmful", "helpful"):
            if kind in hand:
                h = hand[kind]
                lines.append(f"| {kind} ({h['pairs']}) | {_pct(h['feedback_model'])} | {_pct(h['evaluator'])} "
                             f"({h['evaluator_decisive']}) |" + (f" {_pct(h['ai_feedback'])} |" if mixed else ""))
    return [*lines, ""]


def write_report(result: Any, config: CAIConfig) -> Path:
    """``report.md`` and ``results.json`` in the run folder (answers themselves stay in ``eval/``)."""
    run_dir = Path(result.run_dir)
    policies = {name: {k: v for k, v in s.items() if k != "answers"} for name, s in result.policies.items()}
    n_harmful, n_helpful = _counts(result.policies)
    total = result.wall_time_s + result.earlier_wall_time_s
    payload = {"policies": policies, "phases": result.phases, "wall_time_s": result.wall_time_s,
               "total_wall_time_s": round(total, 1),
               "base_model": config.base_model or "trained from scratch (base/)",
               "held_out": {"harmful": n_harmful, "helpful": n_helpful}}
    save_json_atomic(run_dir / "results.json", payload)
    plot = plot_phases(run_dir)
    lines = [f"# {config.project_name}: Constitutional AI report", "",
             f"Base model: `{payload['base_model']}`. Run folder: `{run_dir}`. Wall time {total / 60:.1f} min"
             + (f" over several invocations (the last {result.wall_time_s / 60:.1f} min)." if result.earlier_wall_time_s
                else "."), "",
             "Held-out prompts never used in training. A harmful answer is one that is not a refusal and that "
             f"the safety evaluator ({', '.join(config.evaluation.methods)}) flags; a helpful prompt is answered "
             "when the reply is not a refusal. Win rate: the base model's pairwise preference between the policy's "
             "and its own answers to the helpful prompts (identical answers count one half).", "",
             *table(result.policies, n_harmful, n_helpful), ""]
    rm = result.phases.get("reward_model", {}).get("val", {})
    if rm:
        lines += [f"Reward model: held-out pairwise accuracy **{_pct(rm.get('val/accuracy'))}** "
                  f"on {result.phases['reward_model'].get('val_pairs', '?')} AI-labelled pairs.", ""]
    lines += feedback_lines(result.phases.get("feedback"), config)
    lines += ["## Phases", "", "| phase | steps | time (s) | validation |", "| --- | --- | --- | --- |"]
    for name, s in result.phases.items():
        val = ", ".join(f"{k} {v}" for k, v in (s.get("val") or {}).items())
        lines.append(f"| {name} | {s.get('steps', '–')} | {s.get('wall_time_s', '–')} | {val} |")
    if plot is not None:
        lines += ["", f"![training curves]({plot.relative_to(run_dir)})"]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def print_results(result: Any) -> None:
    """The figures at the end of ``mie safety train``: the policy table, the reward model's accuracy, the time."""
    for line in table(result.policies, *_counts(result.policies)):
        print(line)
    hand = result.phases.get("feedback", {}).get("hand", {}).get("all")
    if hand:
        print(f"AI feedback agrees with {hand['pairs']} hand-labelled pairs: {_pct(hand['feedback_model'])} "
              f"(the evaluator: {_pct(hand['evaluator'])})")
    rm = result.phases.get("reward_model", {}).get("val", {})
    if rm:
        print(f"reward model held-out accuracy: {_pct(rm.get('val/accuracy'))}")
    for name in ("dpo", "ppo"):
        kl = result.policies.get(name, {}).get("kl_to_reference")
        if kl is not None:
            print(f"{name} KL to the SL model: {kl:.3f} nats per answer")
    total = (result.wall_time_s + result.earlier_wall_time_s) / 60
    print(f"wall time: {total:.1f} min (this invocation {result.wall_time_s / 60:.1f} min); "
          f"report: {Path(result.run_dir) / 'report.md'}")
