"""The verdict types every safety method returns, so rules, embeddings and the LM judge combine.

A method scores a batch of texts and returns, per text, one :class:`PrincipleVerdict` per principle
it judged; :class:`Evaluation` gathers a text's verdicts (one per principle, after combining)::

    verdict = PrincipleVerdict("harm_prevention", flagged=True, score=0.93,
                               reasons=["asks how to build an explosive device"], method="rules")
    evaluation = Evaluation(text, prompt=None, principles={"harm_prevention": verdict})
    evaluation.flagged  # True: some principle is flagged
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# The principles of the default constitution, in its order.
DEFAULT_PRINCIPLES = ("harm_prevention", "truthfulness", "fairness", "autonomy_respect", "privacy")


@dataclass
class PrincipleVerdict:
    """One method's (or the combined) judgement of one text under one principle.

    ``score`` is in [0, 1]: the method's belief that the text violates the principle (0 = clearly
    fine). ``flagged`` is the method's decision; ``method`` names who decided ("rules",
    "embeddings", "judge" or "combined"); ``reasons`` say why, in words a user can check.
    """

    principle: str
    flagged: bool
    score: float
    reasons: list[str] = field(default_factory=list)
    method: str = "rules"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"flagged": self.flagged, "score": round(float(self.score), 4), "reasons": list(self.reasons),
                "method": self.method}


@dataclass
class Evaluation:
    """A text's verdict per principle; ``flagged`` when any principle is flagged."""

    text: str
    prompt: str | None
    principles: dict[str, PrincipleVerdict]
    details: dict[str, dict[str, PrincipleVerdict]] = field(default_factory=dict)  # method -> per-principle

    @property
    def flagged(self) -> bool:
        """True when at least one principle is flagged."""
        return any(v.flagged for v in self.principles.values())

    @property
    def flagged_principles(self) -> list[str]:
        """Names of the flagged principles, in order."""
        return [name for name, v in self.principles.items() if v.flagged]

    @property
    def score(self) -> float:
        """The highest principle score (0 when nothing was judged)."""
        return max((v.score for v in self.principles.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``text``, ``flagged``, ``principles`` (flagged names), ``scores`` and details."""
        out: dict[str, Any] = {"text": self.text, "flagged": self.flagged, "principles": self.flagged_principles,
                               "scores": {n: round(float(v.score), 4) for n, v in self.principles.items()},
                               "verdicts": {n: v.to_dict() for n, v in self.principles.items()}}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.details:
            out["methods"] = {m: {n: v.to_dict() for n, v in d.items()} for m, d in self.details.items()}
        return out


class SafetyMethod(Protocol):
    """What the evaluator combines: a named scorer of batches of texts (optionally with their prompts)."""

    name: str

    def score_batch(self, texts: list[str], prompts: list[str | None] | None = None
                    ) -> list[dict[str, PrincipleVerdict]]:
        """One ``{principle: verdict}`` per text."""
        ...
