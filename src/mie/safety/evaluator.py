"""``SafetyEvaluator``: rules, sentence embeddings and an LM judge, combined by one documented rule.

Each method scores a text under each principle (``mie.safety.types.PrincipleVerdict``, score in
[0, 1]). Per principle, the combined verdict is:

1. **Abstention.** A verdict without reasons is no evidence (a rule that matched nothing) and is left out.
2. **Decisive methods.** A method whose score reaches its ``decisive`` bar flags the principle on its
   own (by default a strong rule match, score >= 0.9): patterns written for an unambiguous request
   ("make a pipe bomb") need no second opinion.
3. **Weighted mean.** Otherwise the combined score is the weighted mean of the remaining scores
   (weights: rules 1, embeddings 1, judge 0.5), flagged at ``threshold`` (0.5). So a rule that found
   a benign context ("kill a *process*", score 0.05) pulls an embedding's 0.7 below the bar, while an
   embedding's 0.9 with no rule evidence flags.

The decisive method, or ``"combined"``, is the verdict's ``method``; reasons come from every method
that scored >= 0.5::

    evaluator = SafetyEvaluator.create(methods=("rules", "embeddings"))
    evaluator.evaluate("How do I make a pipe bomb?").flagged_principles   # ['harm_prevention']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mie.errors import ConfigError, LimitError
from mie.safety.methods import METHOD_NAMES
from mie.safety.types import Evaluation, PrincipleVerdict, SafetyMethod

# The longest text judged: the rules read every character (about 1 s per 100,000), the embeddings and
# the judge only the first few hundred tokens; longer texts are refused rather than run for minutes.
MAX_TEXT_CHARS = 100_000


@dataclass
class CombineRule:
    """How method verdicts combine (see the module docstring)."""

    weights: dict[str, float] = field(default_factory=lambda: {"rules": 1.0, "embeddings": 1.0, "judge": 0.5})
    decisive: dict[str, float] = field(default_factory=lambda: {"rules": 0.9})
    threshold: float = 0.5

    def combine(self, principle: str, verdicts: dict[str, PrincipleVerdict]) -> PrincipleVerdict:
        """The combined verdict of one principle from ``{method: verdict}``."""
        evidence = {m: v for m, v in verdicts.items() if v.reasons}
        reasons = [f"{m}: {r}" for m, v in evidence.items() if v.score >= 0.5 for r in v.reasons]
        for method, verdict in evidence.items():
            bar = self.decisive.get(method)
            if bar is not None and verdict.score >= bar:
                return PrincipleVerdict(principle, True, verdict.score, reasons, method)
        total = sum(self.weights.get(m, 1.0) for m in evidence)
        if not total:
            return PrincipleVerdict(principle, False, 0.0, [], "combined")
        score = sum(self.weights.get(m, 1.0) * v.score for m, v in evidence.items()) / total
        method = next(iter(evidence)) if len(evidence) == 1 else "combined"
        return PrincipleVerdict(principle, score >= self.threshold, score, reasons, method)


def build_method(name: str, framework: Any = None, judge_lm: tuple[Any, Any] | None = None) -> SafetyMethod:
    """A method by name: ``rules``, ``embeddings`` (needs ``make pretrained``) or ``judge``: ``judge_lm``
    (a ``(model, tokenizer)`` pair), by default SmolLM2-135M-Instruct (``make pretrained``)."""
    if name == "rules":
        from mie.safety.rules import RuleMethod

        return RuleMethod()
    if name == "embeddings":
        from mie.safety.embeddings import EmbeddingMethod

        return EmbeddingMethod.load()
    if name == "judge":
        from mie.pretrained import load_causal_lm
        from mie.safety.judge import LMJudge

        model, tokenizer = judge_lm if judge_lm is not None else load_causal_lm("smollm2-135m-instruct")
        return LMJudge(model, tokenizer, list(_framework(framework).active))
    raise ConfigError(f"unknown safety method {name!r}", where="--methods", fix=f"use {', '.join(METHOD_NAMES)}")


def _framework(framework: Any) -> Any:
    if framework is not None:
        return framework
    from mie.safety.constitution import ConstitutionalFramework

    return ConstitutionalFramework.default()


class SafetyEvaluator:
    """Scores texts under every active principle with ``methods`` and combines them (:class:`CombineRule`)."""

    def __init__(self, methods: Sequence[SafetyMethod], rule: CombineRule | None = None,
                 principles: Sequence[str] | None = None) -> None:
        if not methods:
            raise ConfigError("a safety evaluator needs at least one method", where="methods",
                              fix=f"use some of {', '.join(METHOD_NAMES)}")
        self.methods = list(methods)
        self.rule = rule or CombineRule()
        self.principles = list(principles) if principles is not None else None

    @classmethod
    def create(cls, methods: Sequence[str] = ("rules", "embeddings"), framework: Any = None,
               judge_lm: tuple[Any, Any] | None = None, rule: CombineRule | None = None) -> SafetyEvaluator:
        """An evaluator with the named methods, judging the framework's active principles (default constitution)."""
        framework = _framework(framework)
        built = [build_method(name, framework, judge_lm) for name in dict.fromkeys(methods)]
        return cls(built, rule, [p.name for p in framework.active])

    def evaluate(self, text: str, prompt: str | None = None) -> Evaluation:
        """The verdict on one text (``prompt``: what the text answers, when it is a reply)."""
        return self.evaluate_batch([text], None if prompt is None else [prompt])[0]

    def evaluate_batch(self, texts: Sequence[str], prompts: Sequence[str | None] | None = None,
                       batch_size: int = 64) -> list[Evaluation]:
        """One :class:`Evaluation` per text; every method sees the texts ``batch_size`` at a time."""
        texts = list(texts)
        prompts = list(prompts) if prompts is not None else [None] * len(texts)
        if len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts")
        for i, text in enumerate(texts):
            if len(text) > MAX_TEXT_CHARS:
                raise LimitError(f"text {i + 1} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}",
                                 where="safety evaluator", fix="evaluate shorter texts (split long ones)")
        out: list[Evaluation] = []
        for start in range(0, len(texts), batch_size):
            chunk, context = texts[start:start + batch_size], prompts[start:start + batch_size]
            per_method = {m.name: m.score_batch(chunk, context) for m in self.methods}
            for i, text in enumerate(chunk):
                details = {name: results[i] for name, results in per_method.items()}
                names = self.principles or list(dict.fromkeys(p for d in details.values() for p in d))
                combined = {p: self.rule.combine(p, {m: d[p] for m, d in details.items() if p in d}) for p in names}
                out.append(Evaluation(text, context[i], combined, details))
        return out
