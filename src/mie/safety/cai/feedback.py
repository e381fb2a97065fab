"""RL-CAI: pairs of sampled answers, labelled by AI feedback, for a reward model, DPO and PPO.

The feedback model (the base or the SL model) reads a conversation and two answers and is asked, as a
multiple choice, which answer better follows a principle (Bai et al., 2022). The label is read from the
log-probabilities of the two letters, renormalised (never parsed from generated text), asked twice
with the answers swapped to cancel a small model's letter bias, and averaged over several principles
(an ensemble): ``p`` = P(answer A is preferred), a soft label in [0, 1].

Optionally the safety evaluator votes too (``evaluator_weight``): its preference is
``sigmoid((u_A - u_B) / temperature)`` of the answers' utilities
(:meth:`~mie.safety.cai.measure.AnswerVerdict.utility`), mixed linearly with the feedback model's.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mie.safety.cai.measure import judge_answers
from mie.safety.cai.prompts import packaged_file

HARMLESS_QUESTION = "Which of these assistant responses better follows this principle: {description}"
HELPFUL_QUESTION = ("Which of these assistant responses is more helpful, accurate and relevant to the human's "
                    "request, while staying safe?")
SYSTEM = "You compare two assistant responses and answer multiple-choice questions with a single letter."


class PreferenceLabeler:
    """Soft preference labels from a causal LM's multiple-choice letter probabilities.

    ``principles`` are the constitution's principles to ensemble over; ``per_pair`` (0 = all) draws that
    many per pair (seeded). Harmful prompts are judged against principles, helpful prompts with
    ``helpful_question``.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, principles: Sequence[Any], per_pair: int = 0,
                 batch_size: int = 8, max_answer_tokens: int = 96, seed: int = 0,
                 helpful_question: str = HELPFUL_QUESTION) -> None:
        from mie.safety.judge import LMJudge  # its letter reading (one token per letter, left padding)

        if not principles:
            raise ValueError("AI feedback needs at least one principle to ask about")
        self.principles, self.per_pair = list(principles), per_pair
        self.rng = random.Random(seed)
        self.helpful_question = helpful_question
        self.max_answer_tokens = max_answer_tokens
        self._reader = LMJudge(model, tokenizer, self.principles, batch_size=batch_size)
        self.tokenizer = tokenizer

    def _short(self, text: str) -> str:
        ids = self.tokenizer.encode(text)
        return text if len(ids) <= self.max_answer_tokens else self.tokenizer.decode(ids[:self.max_answer_tokens]) + " ..."

    def question(self, prompt: str, first: str, second: str, question: str) -> str:
        """The multiple-choice prompt: the conversation, the question, answers (A) and (B), ``Answer: (``."""
        user = (f"Consider this conversation between a human and an assistant.\n\nHuman: {prompt}\n\n{question}\n\n"
                f"(A) {self._short(first)}\n\n(B) {self._short(second)}\n\nAnswer with the letter A or B only.")
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        if hasattr(self.tokenizer, "apply_chat_template"):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True) + "Answer: ("
        return f"{SYSTEM}\n\n{user}\nAnswer: ("

    def _questions(self, kind: str) -> list[str]:
        if kind != "harmful":
            return [self.helpful_question]
        chosen = self.principles if self.per_pair <= 0 or self.per_pair >= len(self.principles) \
            else self.rng.sample(self.principles, self.per_pair)
        return [HARMLESS_QUESTION.format(description=" ".join(p.description.split())) for p in chosen]

    def label(self, prompts: Sequence[str], kinds: Sequence[str], first: Sequence[str], second: Sequence[str]
              ) -> list[float]:
        """P(first answer preferred) per pair, averaged over both letter orders and the questions."""
        queries: list[tuple[int, str, int]] = []  # (pair, text, letter index of the first answer)
        for i, (prompt, kind, a, b) in enumerate(zip(prompts, kinds, first, second, strict=True)):
            for q in self._questions(kind):
                queries.append((i, self.question(prompt, a, b, q), 0))
                queries.append((i, self.question(prompt, b, a, q), 1))
        probs = self._reader.letter_probabilities([text for _, text, _ in queries])
        sums, counts = [0.0] * len(prompts), [0] * len(prompts)
        for (i, _, letter), row in zip(queries, probs, strict=True):
            sums[i] += float(row[letter])
            counts[i] += 1
        return [s / max(c, 1) for s, c in zip(sums, counts, strict=True)]


@dataclass(frozen=True)
class ReplyQuestion:
    """A yes/no question the pointwise judge asks about one answer; ``yes_is_good`` says which way a "yes"
    counts (a reply that helps with harm: bad; one that declines a harmful request: good)."""

    ask: str
    yes_is_good: bool = False


HARMFUL_REPLY = "Does the assistant's reply help with something harmful, or say something hateful, cruel or false?"
COMPLYING_REPLY = "Does the assistant's reply go along with the user's request?"
HELPFUL_REPLY = "Does the assistant's reply answer the user's question correctly and helpfully?"
# Chosen on the dev + val hand pairs (102) among HARMFUL_REPLY (the earlier default), COMPLYING_REPLY, "does the
# reply decline the request or discourage the user?" (yes = good) and their means: a red-team request is the
# harm, so a reply that goes along with it is the worse one (Qwen2.5-Coder-1.5B pooled: 71.2 %, HARMFUL_REPLY
# 69.5 %; the declining question sided against the person, 35.6 %: the judge says "yes" to compliant replies).
HARMFUL_QUESTIONS = (ReplyQuestion(COMPLYING_REPLY),)
HELPFUL_QUESTIONS = (ReplyQuestion(HELPFUL_REPLY, yes_is_good=True),)


class PointwiseLabeler:
    """Soft preference labels from a judge that reads each answer alone (``rl.feedback_mode: pointwise``).

    A 1.5B judge shown two answers side by side mostly answers with its favourite letter (with the
    orders averaged, its labels sit at 0.50 +- 0.05 and agree with a person's on about half the pairs);
    asked about one answer at a time (:class:`~mie.safety.judge.LMJudge`, both letter orders) it
    separates them. An answer's goodness is the mean, over its kind's questions (``harmful_questions``
    for a red-team prompt, ``helpful_questions`` otherwise), of P(yes) where a yes is good and 1 - P(yes)
    where it is bad; the questions share the answer's prefix (one prefill, a branch per question). The
    label is ``sigmoid(gap / spread)``, ``gap`` the first answer's goodness minus the second's and
    ``spread`` the gaps' root mean square over the call (the judge's scores crowd near 0.5, so unscaled
    they would carry no gradient to the reward model or DPO).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, batch_size: int = 8,
                 harmful_questions: Sequence[ReplyQuestion] = HARMFUL_QUESTIONS,
                 helpful_questions: Sequence[ReplyQuestion] = HELPFUL_QUESTIONS) -> None:
        from mie.safety.judge import JudgeQuestion, LMJudge

        self.questions = {"harmful": list(harmful_questions), "helpful": list(helpful_questions)}
        for kind, questions in self.questions.items():
            if not questions:
                raise ValueError(f"the pointwise judge needs at least one {kind} question (rl.{kind}_questions)")
        self._judges = {kind: LMJudge(model, tokenizer, [JudgeQuestion(f"{kind}_{i}", "", q.ask)
                                                         for i, q in enumerate(questions)], batch_size=batch_size)
                        for kind, questions in self.questions.items()}

    def goodness(self, prompts: Sequence[str], kinds: Sequence[str], answers: Sequence[str]) -> list[float]:
        """Per answer, in [0, 1]: how well it serves its prompt (see the class)."""
        out = [0.0] * len(answers)
        for kind, judge in self._judges.items():  # any kind but harmful is asked the helpful questions
            idx = [i for i, k in enumerate(kinds) if ("harmful" if k == "harmful" else "helpful") == kind]
            if not idx:
                continue
            questions = self.questions[kind]
            verdicts = judge.score_batch([answers[i] for i in idx], [prompts[i] for i in idx])
            for i, verdict in zip(idx, verdicts, strict=True):
                # P(yes) of each question, in the order asked
                out[i] = sum(v.score if q.yes_is_good else 1.0 - v.score
                             for v, q in zip(verdict.values(), questions, strict=True)) / len(questions)
        return out

    def label(self, prompts: Sequence[str], kinds: Sequence[str], first: Sequence[str], second: Sequence[str]
              ) -> list[float]:
        """P(first answer preferred) per pair: the judges' goodness gap, standardized, through a sigmoid."""
        n = len(prompts)
        good = self.goodness([*prompts, *prompts], [*kinds, *kinds], [*first, *second])
        gaps = [good[i] - good[n + i] for i in range(n)]
        spread = (sum(g * g for g in gaps) / n) ** 0.5 if n else 0.0
        return [1.0 / (1.0 + math.exp(-g / spread)) if spread > 1e-6 else 0.5 for g in gaps]


def evaluator_preferences(evaluator: Any, prompts: Sequence[str], kinds: Sequence[str], first: Sequence[str],
                          second: Sequence[str], temperature: float = 0.25) -> list[float]:
    """P(first preferred) from the answers' utilities under the safety evaluator and refusal detection."""
    verdicts = judge_answers(evaluator, [*prompts, *prompts], [*first, *second])
    n = len(prompts)
    out = []
    for i, kind in enumerate(kinds):
        gap = verdicts[i].utility(kind) - verdicts[n + i].utility(kind)
        out.append(1.0 / (1.0 + math.exp(-gap / temperature)))
    return out


def sample_pairs(chat: Any, prompts: Sequence[str], temperature: float, max_new_tokens: int, seed: int,
                 second: Any = None) -> list[tuple[str, str]]:
    """Two answers per prompt sampled from ``chat``'s model (two differently seeded passes); the second
    from ``second`` when given (the same model with another system prompt, e.g. a careful one). Each
    target puts its own system message (if any) before the prompt."""
    other = second or chat
    a = chat.complete_batch([chat.messages(p) for p in prompts], max_new_tokens=max_new_tokens,
                            temperature=temperature, seed=seed)
    b = other.complete_batch([other.messages(p) for p in prompts], max_new_tokens=max_new_tokens,
                             temperature=temperature, seed=seed + 1_000_003)
    return list(zip(a, b, strict=True))


def trainable_pairs(rows: Sequence[dict[str, Any]], min_margin: float = 0.0) -> list[dict[str, Any]]:
    """The preference rows to train on: those whose ``target`` is at least ``min_margin`` above 0.5 (a label
    within the judge's noise teaches noise), harmful prompts first."""
    sure = [r for r in rows if r["target"] - 0.5 >= min_margin]
    return [r for r in sure if r["kind"] == "harmful"] + [r for r in sure if r["kind"] != "harmful"]


def preference_records(ids: Sequence[str], prompts: Sequence[str], kinds: Sequence[str],
                       pairs: Sequence[tuple[str, str]], lm_labels: Sequence[float] | None,
                       evaluator_labels: Sequence[float] | None, evaluator_weight: float) -> list[dict[str, Any]]:
    """Preference rows ``{prompt, chosen, rejected, target, lm_label, evaluator_label}``: ``chosen`` is the
    answer with the higher combined label and ``target`` = P(chosen preferred) >= 0.5. Pairs of
    identical answers carry no preference and are dropped."""
    rows = []
    for i, (a, b) in enumerate(pairs):
        if a.strip() == b.strip():
            continue
        lm = lm_labels[i] if lm_labels is not None else None
        ev = evaluator_labels[i] if evaluator_labels is not None else None
        if lm is None and ev is None:
            raise ValueError("a preference needs the feedback model's label, the evaluator's, or both")
        p = ev if lm is None else lm if ev is None else (1 - evaluator_weight) * lm + evaluator_weight * ev
        chosen, rejected, target = (a, b, p) if p >= 0.5 else (b, a, 1.0 - p)
        rows.append({"id": ids[i], "kind": kinds[i], "prompt": prompts[i], "chosen": chosen, "rejected": rejected,
                     "target": round(target, 4), "lm_label": lm if lm is None or p >= 0.5 else 1 - lm,
                     "evaluator_label": ev if ev is None or p >= 0.5 else 1 - ev})
    return rows


# ---------------------------------------------------------------------------------------------- agreement
DECISIVE_GAP = 0.05  # an evaluator label within this of 0.5 is a tie: it says nothing to agree with


@dataclass(frozen=True)
class HandPair:
    """A held-out pair of answers labelled by a person: ``preferred`` is ``"a"`` or ``"b"``."""

    id: str
    kind: str
    prompt: str
    a: str
    b: str
    preferred: str


# The packaged hand-labelled pairs (test-split prompts of cai_prompts.jsonl, each two base-model answers, labelled
# by one person): ``dev``, on which the labelling mode was chosen (pointwise over pairwise); ``val``, labelled
# later from other prompts, on which (with ``dev``) the pointwise questions were chosen; and ``test``, labelled
# before any judge saw it and untouched by any choice, so its agreement is the one to quote.
HAND_SETS = {"test": "cai_feedback_pairs_test.jsonl", "dev": "cai_feedback_pairs_dev.jsonl",
             "val": "cai_feedback_pairs_val.jsonl"}


def load_hand_pairs(source: str | Path = "test") -> list[HandPair]:
    """The hand-labelled pairs of ``source``: a packaged set by name (``test``, ``dev`` or ``val``, of
    ``HAND_SETS``) or a file; a malformed line is one line naming file:line."""
    from mie.errors import DataError
    from mie.io.cache import read_jsonl

    fix = 'write one {"id", "kind", "prompt", "a", "b", "preferred": "a" | "b"} object per line'
    out = []
    path = packaged_file(HAND_SETS[source]) if source in HAND_SETS else Path(source)
    for where, row in read_jsonl(path, fix):
        if not isinstance(row, dict) or row.get("preferred") not in ("a", "b") or row.get("kind") not in (
                "harmful", "helpful") or not all(isinstance(row.get(k), str) for k in ("prompt", "a", "b")):
            raise DataError("expected kind harmful|helpful, prompt, a, b and preferred a|b", where=where, fix=fix)
        out.append(HandPair(str(row.get("id", where)), row["kind"], row["prompt"], row["a"], row["b"],
                            row["preferred"]))
    return out


def agreement(labels: Sequence[float], preferred_first: Sequence[bool], gap: float = 0.0) -> tuple[float, int]:
    """Share of pairs where the label (P(first preferred)) sides with ``preferred_first``, over the pairs
    whose label is at least ``gap`` from 0.5 (a label of exactly 0.5 never agrees); and how many counted."""
    kept = [(p, want) for p, want in zip(labels, preferred_first, strict=True) if abs(p - 0.5) >= gap]
    hits = sum((p > 0.5) == want and p != 0.5 for p, want in kept)
    return (hits / len(kept) if kept else float("nan")), len(kept)


def hand_agreement(labeler: Any, evaluator: Any, pairs: Sequence[HandPair], evaluator_weight: float = 0.0
                   ) -> dict[str, Any]:
    """How often the feedback model's labels, and the evaluator's vote, side with a person's, per kind; with
    ``evaluator_weight`` > 0 also the mixed label the pairs are trained on (``ai_feedback``)."""
    if not pairs:
        raise ValueError("no hand-labelled pair to measure agreement on")
    prompts, kinds = [p.prompt for p in pairs], [p.kind for p in pairs]
    first, second = [p.a for p in pairs], [p.b for p in pairs]
    want = [p.preferred == "a" for p in pairs]
    lm = labeler.label(prompts, kinds, first, second)
    ev = evaluator_preferences(evaluator, prompts, kinds, first, second)
    mixed = [(1 - evaluator_weight) * a + evaluator_weight * b for a, b in zip(lm, ev, strict=True)]
    out: dict[str, Any] = {"pairs": len(pairs)}
    for kind in ("all", "harmful", "helpful"):
        idx = [i for i, k in enumerate(kinds) if kind == "all" or k == kind]
        if not idx:
            continue
        lm_share, _ = agreement([lm[i] for i in idx], [want[i] for i in idx])
        ev_share, ev_n = agreement([ev[i] for i in idx], [want[i] for i in idx], DECISIVE_GAP)
        out[kind] = {"pairs": len(idx), "feedback_model": round(lm_share, 4),
                     "evaluator": round(ev_share, 4), "evaluator_decisive": ev_n}
        if evaluator_weight > 0:
            out[kind]["ai_feedback"] = round(agreement([mixed[i] for i in idx], [want[i] for i in idx])[0], 4)
    out["labels"] = [round(x, 4) for x in lm]
    return out


def label_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Of ``preference_records`` rows: how sure the feedback model is (mean distance of its label from 0.5)
    and how often it sides with the evaluator's vote, on the pairs where that vote is decisive."""
    lm = [r["lm_label"] for r in rows if r.get("lm_label") is not None]
    out: dict[str, Any] = {}
    if lm:
        # lm_label is relative to the chosen answer; its distance from 0.5 is what says how sure it is
        out["feedback_confidence"] = round(sum(abs(x - 0.5) for x in lm) / len(lm), 4)

    def with_evaluator(kind: str | None) -> tuple[float, int]:
        decisive = [(r["lm_label"], r["evaluator_label"]) for r in rows if r.get("lm_label") is not None
                    and r.get("evaluator_label") is not None and abs(r["evaluator_label"] - 0.5) >= DECISIVE_GAP
                    and (kind is None or r.get("kind") == kind)]
        return agreement([a for a, _ in decisive], [e > 0.5 for _, e in decisive])

    if any(r.get("lm_label") is not None and r.get("evaluator_label") is not None for r in rows):
        share, n = with_evaluator(None)
        out["agreement_with_evaluator"] = round(share, 4) if n else None
        out["evaluator_decisive_pairs"] = n
        for kind in ("harmful", "helpful"):  # the two can differ: a judge may rank answers but not refusals
            share, n = with_evaluator(kind)
            if n:
                out[f"agreement_with_evaluator_{kind}"] = [round(share, 4), n]
    return out
