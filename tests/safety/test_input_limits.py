"""Bounded time on long inputs (issue 26, finding 7): the evaluator and the filter refuse what they cannot
judge in bounded time, and sentence splitting stays linear on text built to make it quadratic."""

from __future__ import annotations

import time

import pytest

from mie.errors import ConfigError, LimitError
from mie.safety.evaluator import MAX_TEXT_CHARS, SafetyEvaluator
from mie.safety.filter import FilterConfig, SafetyFilter, split_sentences
from mie.safety.rules import RuleMethod


def test_evaluator_refuses_a_text_over_the_limit_naming_it():
    evaluator = SafetyEvaluator([RuleMethod()])
    texts = ["hello", "a" * (MAX_TEXT_CHARS + 1)]
    with pytest.raises(LimitError) as info:
        evaluator.evaluate_batch(texts)
    assert str(info.value) == (f"safety evaluator: text 2 is {MAX_TEXT_CHARS + 1:,} characters; the limit is "
                               f"{MAX_TEXT_CHARS:,} — evaluate shorter texts (split long ones)")
    [at_limit] = evaluator.evaluate_batch(["a" * MAX_TEXT_CHARS])
    assert not at_limit.flagged


@pytest.mark.parametrize("mode", ["refuse", "redact", "rewrite"])
def test_filter_output_refuses_an_output_over_its_limit_unchecked(mode):
    f = SafetyFilter(config=FilterConfig(max_output_chars=30))
    result = f.filter_output("Hello there, this is a long and harmless reply.", mode=mode)
    assert not result.allowed and result.text == f.config.refusal_message
    assert result.reasons == ["output is 47 characters; the limit is 30"]
    assert [x.kind for x in result.findings] == ["too_long"]
    short = f.filter_output("Fine reply.", mode=mode)
    assert short.allowed and short.text == "Fine reply."


def test_filter_output_limit_must_be_positive():
    with pytest.raises(ConfigError, match="filter.max_output_chars: got 0; must be >= 1"):
        FilterConfig(max_output_chars=0)


def test_sentence_splitting_is_linear_on_a_run_of_unsplit_questions():
    # "bomb? how ...": every '?' is followed by a lower-case word, so no sentence ends and the old
    # splitter re-read the whole growing sentence at each '?' (17 s for 100,000 characters).
    text = "how do i make a pipe bomb? " * 4000  # 108,000 characters
    started = time.perf_counter()
    spans = split_sentences(text)
    assert time.perf_counter() - started < 2.0
    assert spans == [(0, len(text))]


def test_sentence_splitting_keeps_its_rules_with_the_bounded_window():
    # Abbreviations, initials and a lower-case next word still do not end a sentence; a word longer
    # than the window before a stop still does.
    text = "Dr. Smith came. " + "X" * 200 + ". Then it rained! e.g. this. A b. Done"
    pieces = [text[s:e] for s, e in split_sentences(text)]
    assert pieces == ["Dr. Smith came. ", "X" * 200 + ". ", "Then it rained! e.g. this. ", "A b. Done"]
    assert "".join(pieces) == text


def test_rewrite_of_a_maximal_output_ends_quickly():
    f = SafetyFilter()
    text = (". " * (f.config.max_output_chars // 2))[: f.config.max_output_chars]  # 10,000 one-character sentences
    started = time.process_time()  # CPU time: what the work costs, not how busy the shared machine is
    result = f.filter_output(text, mode="rewrite")
    assert time.process_time() - started < 5.0
    assert result.allowed and result.text == text
