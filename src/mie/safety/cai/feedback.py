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
from typing import Any

import torch

from mie.safety.cai.measure import judge_answers

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


def sample_pairs(chat: Any, prompts: Sequence[str], temperature: float, max_new_tokens: int, seed: int
                 ) -> list[tuple[str, str]]:
    """Two answers per prompt sampled from ``chat``'s model (two differently seeded passes)."""
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    a = chat.complete_batch(conversations, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    b = chat.complete_batch(conversations, max_new_tokens=max_new_tokens, temperature=temperature,
                            seed=seed + 1_000_003)
    return list(zip(a, b, strict=True))


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
