"""SL-CAI: answer -> critique -> revision, for N rounds, then supervised fine-tuning on the final revisions.

For each red-team prompt the model answers; then, per round, a principle is drawn from the
constitution (or the prompt's own principle is used), the model critiques its last answer against the
principle's critique prompt and rewrites it following the revision prompt. Few-shot examples of the
whole exchange (from the config) come first, as Bai et al. do. ``candidates`` > 1 samples several
revisions and keeps the one the safety evaluator and refusal detection rate best
(:meth:`~mie.safety.cai.measure.AnswerVerdict.utility`), because a small model's single revision is
often still harmful. A final revision that is still harmful is kept in the dataset but not trained on.

Helpful prompts keep the model's own answer (when it is neither a refusal nor flagged), so fine-tuning
on the revisions does not teach the model to refuse everything (Bai et al. mix in helpful samples too).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mie.safety.cai.measure import judge_answers
from mie.safety.cai.prompts import CAIPrompt

_LABEL = re.compile(r"^\s*(?:critique|revision|revised response|rewrite)\s*:\s*", re.IGNORECASE)


@dataclass
class FewShot:
    """One worked example of the critique-revision exchange."""

    prompt: str
    response: str
    critique: str
    revision: str


@dataclass
class CritiqueSettings:
    """How SL-CAI generates: rounds, revision candidates, lengths and the request templates.

    ``critique_request`` and ``revision_request`` may use ``{critique_prompt}`` / ``{revision_prompt}``
    (the drawn principle's own text) and ``{principle}`` (its name).
    """

    rounds: int = 1
    candidates: int = 1
    temperature: float = 0.8  # of the sampled candidates (the first candidate is always greedy)
    answer_tokens: int = 64
    critique_tokens: int = 48
    revision_tokens: int = 64
    use_prompt_principle: bool = True  # False: draw every round's principle from the constitution
    critique_request: str = "CRITIQUE REQUEST: {critique_prompt}"
    revision_request: str = "REVISION REQUEST: {revision_prompt}"
    few_shot: list[FewShot] = field(default_factory=list)


def clean(text: str) -> str:
    """A generated critique or revision without a leading ``Critique:``/``Revision:`` label."""
    return _LABEL.sub("", text.strip(), count=1).strip()


def _requests(settings: CritiqueSettings, principle: Any) -> tuple[str, str]:
    values = {"critique_prompt": principle.critique_prompt, "revision_prompt": principle.revision_prompt,
              "principle": principle.name}
    return settings.critique_request.format(**values), settings.revision_request.format(**values)


def _shots(settings: CritiqueSettings, critique: str, revision: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for shot in settings.few_shot:
        messages += [{"role": "user", "content": shot.prompt}, {"role": "assistant", "content": shot.response},
                     {"role": "user", "content": critique}, {"role": "assistant", "content": shot.critique},
                     {"role": "user", "content": revision}, {"role": "assistant", "content": shot.revision}]
    return messages


def critique_revise(chat: Any, prompts: Sequence[CAIPrompt], framework: Any, evaluator: Any,
                    settings: CritiqueSettings, seed: int = 0) -> list[dict[str, Any]]:
    """One record per red-team prompt: ``prompt``, ``initial`` answer, ``rounds`` (principle, critique,
    candidates, revision), ``final``, ``accepted`` (not harmful), ``kind``.

    ``chat`` is a :class:`~mie.safety.targets.ChatTarget` (``messages`` frames a prompt with its system
    message, ``complete_batch`` generates);
    ``framework`` is a ``ConstitutionalFramework``; ``evaluator`` a ``SafetyEvaluator``.
    """
    rng = random.Random(seed)
    texts = [p.prompt for p in prompts]
    current = chat.complete_batch([chat.messages(t) for t in texts], max_new_tokens=settings.answer_tokens,
                                  temperature=0.0)
    records = [{"id": p.id, "kind": p.kind, "prompt": p.prompt, "initial": a, "rounds": []}
               for p, a in zip(prompts, current, strict=True)]
    system = chat.messages("")[:-1]  # the chat's system message, if it has one
    for round_index in range(settings.rounds):
        principles = [framework.get(p.principle) if settings.use_prompt_principle and p.principle in framework
                      else framework.sample(rng) for p in prompts]
        requests = [_requests(settings, principle) for principle in principles]
        # the system message (if any) first, then the few-shot turns, then this prompt's own
        histories = [system + _shots(settings, cr, rr) + [
            {"role": "user", "content": t}, {"role": "assistant", "content": a}, {"role": "user", "content": cr}]
                     for t, a, (cr, rr) in zip(texts, current, requests, strict=True)]
        critiques = [clean(c) for c in chat.complete_batch(histories, max_new_tokens=settings.critique_tokens,
                                                           temperature=0.0)]
        revising = [h + [{"role": "assistant", "content": c}, {"role": "user", "content": rr}]
                    for h, c, (_, rr) in zip(histories, critiques, requests, strict=True)]
        candidates = [[clean(r)] for r in chat.complete_batch(revising, max_new_tokens=settings.revision_tokens,
                                                              temperature=0.0)]
        for k in range(1, settings.candidates):
            sampled = chat.complete_batch(revising, max_new_tokens=settings.revision_tokens,
                                          temperature=settings.temperature, seed=seed + 7919 * (round_index * 64 + k))
            for row, text in zip(candidates, sampled, strict=True):
                row.append(clean(text))
        flat = [(i, c) for i, row in enumerate(candidates) for c in row]
        verdicts = judge_answers(evaluator, [texts[i] for i, _ in flat], [c for _, c in flat])
        best: dict[int, tuple[float, str]] = {}
        for (i, text), verdict in zip(flat, verdicts, strict=True):
            utility = verdict.utility("harmful") if text else -1.0
            if i not in best or utility > best[i][0]:
                best[i] = (utility, text)
        for i, record in enumerate(records):
            chosen = best[i][1] or current[i]
            record["rounds"].append({"principle": principles[i].name, "critique": critiques[i],
                                     "candidates": candidates[i], "revision": chosen})
            current[i] = chosen
    final_verdicts = judge_answers(evaluator, texts, current)
    for record, answer, verdict in zip(records, current, final_verdicts, strict=True):
        record.update(final=answer, accepted=not verdict.harmful and bool(answer), refused=verdict.refused,
                      flagged=list(verdict.flagged))
    return records


def helpful_samples(chat: Any, prompts: Sequence[CAIPrompt], evaluator: Any, max_new_tokens: int
                    ) -> list[dict[str, Any]]:
    """One record per helpful prompt: the model's own greedy answer as the ``final`` response, accepted
    when it answers (no refusal) and is not flagged."""
    texts = [p.prompt for p in prompts]
    answers = chat.complete_batch([chat.messages(t) for t in texts], max_new_tokens=max_new_tokens,
                                  temperature=0.0)
    verdicts = judge_answers(evaluator, texts, answers)
    return [{"id": p.id, "kind": p.kind, "prompt": p.prompt, "initial": a, "rounds": [], "final": a,
             "accepted": v.answered and not v.flagged, "refused": v.refused, "flagged": list(v.flagged)}
            for p, a, v in zip(prompts, answers, verdicts, strict=True)]
