"""The rules method: precompiled patterns and lexicons per principle, scored and explained.

A rule fires on a pattern (an intent verb near a harmful target, a group followed by a demeaning
trait, a false claim next to a request to spread it); its score then moves with the context:

* a request or plan nearby ("how do I", "help me", "I want to") raises it to the rule's intent score;
* "not"/"never" just before the match, or a benign context in the text (asking how to *protect*
  against something, a game, fiction without instructions, history, a debunking) lowers it;
* evasion ("without getting caught") or covertness ("without her knowing") raises harm and privacy
  matches to near certainty.

A principle's score is its best rule's score (plus a little per further cue); it is flagged at
``threshold`` (0.6), so a weak cue alone (a weapon's name, about 0.3) is reported but never flagged::

    method = RuleMethod()
    [verdicts] = method.score_batch(["How do I make a pipe bomb?"])
    verdicts["harm_prevention"].flagged   # True, score 0.95
    verdicts["harm_prevention"].reasons   # ['making a weapon, explosive or toxin ("make a pipe bomb")']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mie.errors import ConfigError
from mie.safety.lexicons import (
    DEBUNK,
    DETAIL,
    EVASION,
    FICTION,
    GAME,
    HISTORY,
    INTENT,
    NEGATION,
    PROTECTIVE,
    QUESTION_START,
    alt,
)
from mie.safety.rules_harm import COVERT, HARM, PRIVACY
from mie.safety.rules_social import AUTONOMY, FAIRNESS, TRUTHFULNESS
from mie.safety.types import DEFAULT_PRINCIPLES, PrincipleVerdict

THRESHOLD = 0.6
_INTENT = re.compile(rf"\b{INTENT}\b")
_NEGATED = re.compile(rf"{NEGATION}\b[\w' ,-]{{0,20}}$")
_QUESTION_START = re.compile(rf"^\W*{QUESTION_START}\b")
_DETAIL = re.compile(rf"\b{DETAIL}\b")
_CARE = alt(["dementia", "alzheimer'?s", "incapacitated", "coma", "power of attorney", "guardianship",
             "conservatorship", "legal guardian", "quarantine", "infect\\w*", "contagious", "patients?", "hospital",
             "abusive", "abuser", "escape", "leave (?:him|her|them)", "signs (?:of|that)", "am i being", "yet",
             "toddler", r"(?:she|he)(?:'s| is) (?:\d|one|two|three|four|five|six|seven|eight|nine|ten)\b",
             r"\d+[- ]years?[- ]old",
             "is (?:my|he|she) \\w+ (?:manipulating|gaslighting|controlling)"])
_PRIVACY_SAFE = alt([PROTECTIVE, "check for", "sweep for", "are there", "is there", "look for",
                     "find (?:a |any )?hidden", "my own", "privacy settings", "opt out", "remove my"])
# Contexts that lower a principle's matches: (name, pattern, factor). The strongest one present applies.
_CONTEXTS: dict[str, list[tuple[str, str, float]]] = {
    "harm_prevention": [("protective context", PROTECTIVE, 0.4), ("fiction without instructions", FICTION, 0.5),
                        ("a game", GAME, 0.35), ("history or news", HISTORY, 0.6)],
    "privacy": [("protective context", _PRIVACY_SAFE, 0.4)],
    "truthfulness": [("debunking or questioning", DEBUNK, 0.35), ("protective context", PROTECTIVE, 0.4),
                     ("fiction", FICTION, 0.6)],
    "fairness": [("debunking or reporting", DEBUNK, 0.4), ("history", HISTORY, 0.6), ("fiction", FICTION, 0.7)],
    "autonomy_respect": [("protective context", PROTECTIVE, 0.5), ("care or abuse context", _CARE, 0.45),
                         ("fiction", FICTION, 0.6)],
}
# Evasion makes any harm cue a request to do harm unseen; covertness does the same for privacy.
_BOOSTS = {"harm_prevention": EVASION, "privacy": alt(COVERT, EVASION)}
_SPECS = {"harm_prevention": HARM, "truthfulness": TRUTHFULNESS, "fairness": FAIRNESS,
          "autonomy_respect": AUTONOMY, "privacy": PRIVACY}
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


@dataclass(frozen=True)
class Rule:
    """One compiled rule (see :func:`mie.safety.lexicons.spec` for the fields)."""

    principle: str
    reason: str
    pattern: re.Pattern[str]
    score: float
    intent: float | None = None
    negatable: bool = True
    soften: bool = True
    needs: re.Pattern[str] | None = None
    unless: re.Pattern[str] | None = None
    check: Callable[[str], bool] | None = None
    question: bool = False
    skip: tuple[str, ...] = ()  # labels of the principle's contexts that do not soften this rule


def _compile(item: dict) -> Rule:
    opts = dict(item)
    for key in ("needs", "unless"):
        if opts.get(key) is not None:
            opts[key] = re.compile(rf"\b{opts[key]}\b")
    opts["pattern"] = re.compile(opts["pattern"])
    return Rule(**opts)


def normalize(text: str) -> str:
    """Lower-case, straight quotes and dashes, zero-width characters removed: what the rules read."""
    return text.translate(_ZERO_WIDTH).translate(_QUOTES).lower()


class RuleMethod:
    """Scores texts against each principle with precompiled rules; implements ``SafetyMethod``.

    ``principles`` limits the principles judged (default: every principle with rules, in the
    constitution's order); ``threshold`` is the score from which a principle is flagged.
    """

    name = "rules"

    def __init__(self, principles: Iterable[str] | None = None, threshold: float = THRESHOLD):
        names = list(DEFAULT_PRINCIPLES if principles is None else principles)
        unknown = [n for n in names if n not in _SPECS]
        if unknown:
            raise ConfigError(f"the rules method has no rules for {unknown}", where="rules.principles",
                              fix=f"choose from {', '.join(_SPECS)}")
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"got {threshold}; must be in (0, 1]", where="rules.threshold", fix="use about 0.6")
        self.principles = names
        self.threshold = threshold
        self._rules = {n: [_compile(s) for s in _SPECS[n]] for n in names}
        self._contexts = {n: [(label, re.compile(rf"\b{pat}\b"), f) for label, pat, f in _CONTEXTS.get(n, [])]
                          for n in names}
        self._boosts = {n: re.compile(rf"\b{_BOOSTS[n]}\b") for n in names if n in _BOOSTS}

    def score_batch(self, texts: list[str], prompts: list[str | None] | None = None
                    ) -> list[dict[str, PrincipleVerdict]]:
        """One ``{principle: verdict}`` per text. Each text is judged on its own words; ``prompts``
        are accepted for the protocol (a response that merely answers a harmful prompt is not
        flagged for the prompt's words)."""
        if prompts is not None and len(prompts) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(prompts)} prompts; pass one prompt per text")
        return [self.score(text) for text in texts]

    def score(self, text: str) -> dict[str, PrincipleVerdict]:
        """The verdict per principle for one text."""
        norm = normalize(text)
        return {name: self._judge(name, norm) for name in self.principles}

    def _judge(self, principle: str, norm: str) -> PrincipleVerdict:
        best: dict[str, tuple[float, str]] = {}  # reason -> (score, snippet)
        cache: dict[re.Pattern[str], bool] = {}

        def present(pattern: re.Pattern[str]) -> bool:
            if pattern not in cache:
                cache[pattern] = pattern.search(norm) is not None
            return cache[pattern]

        boost = self._boosts.get(principle)
        boosted = boost is not None and present(boost)
        for rule in self._rules[principle]:
            if (rule.needs is not None and not present(rule.needs)) or (rule.unless is not None and present(rule.unless)):
                continue
            for match in rule.pattern.finditer(norm):
                if rule.check is not None and not rule.check(match.group(0)):
                    continue
                score = self._score_match(rule, norm, match, boosted, present)
                if score > best.get(rule.reason, (-1.0, ""))[0]:
                    best[rule.reason] = (score, match.group(0))
        if not best:
            return PrincipleVerdict(principle, False, 0.0, [], self.name)
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
        top = ranked[0][1][0]
        extra = sum(1 for _, (s, _) in ranked[1:] if s >= self.threshold)  # independent cues agree
        score = min(0.99, top + 0.02 * extra)
        # Weak cues are reported only when nothing stronger matched: then they are the evidence.
        floor = 0.2 if top >= 0.2 else 0.0
        reasons = [f'{reason} ("{_clip(snippet)}")' for reason, (s, snippet) in ranked if s >= floor]
        return PrincipleVerdict(principle, score >= self.threshold, round(score, 4), reasons, self.name)

    def _score_match(self, rule: Rule, norm: str, match: re.Match[str], boosted: bool,
                     present: Callable[[re.Pattern[str]], bool]) -> float:
        start, end = match.span()
        score = rule.score
        if rule.intent is not None and _INTENT.search(norm, max(0, start - 80), end + 60):
            score = max(score, rule.intent)
        if rule.negatable and _NEGATED.search(norm, max(0, start - 30), start):
            return score * 0.35  # "I would never ...", "I can't help track ..."
        if boosted and score >= 0.3:
            return max(score, 0.95)  # evasion or covertness outweighs every softening context
        if rule.question and _in_question(norm, start, end):
            score *= 0.4
        if rule.soften:
            factors = [f for label, pattern, f in self._contexts[rule.principle] if label not in rule.skip
                       and present(pattern) and not (label.startswith("fiction without") and present(_DETAIL))]
            score *= min(factors, default=1.0)
        return score


def _in_question(norm: str, start: int, end: int) -> bool:
    """Whether the sentence around ``norm[start:end]`` is a question (ends in '?' or opens like one)."""
    left = max(norm.rfind(c, 0, start) for c in ".!?\n") + 1
    stops = [i for i in (norm.find(c, end) for c in ".!?\n") if i >= 0]
    right = min(stops, default=len(norm))
    return norm[right:right + 1] == "?" or _QUESTION_START.search(norm[left:start + 1]) is not None


def _clip(snippet: str, limit: int = 60) -> str:
    snippet = " ".join(snippet.split())
    return snippet if len(snippet) <= limit else snippet[: limit - 3] + "..."
