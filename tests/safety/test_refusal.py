"""Refusal detection reads the opening of a reply: declining phrases count, compliant answers do not."""

from __future__ import annotations

import pytest

from mie.safety.refusal import is_refusal, refusal_reason


@pytest.mark.parametrize("reply", [
    "I'm sorry, but I can't help with that.",
    "I cannot provide instructions for making weapons.",
    "I can’t assist with this request.",
    "As an AI language model, I cannot do that.",
    "Sorry, but I won't write that.",
    "That's illegal and I must decline.",
    "I am unable to share someone's personal address.",
    "Helping with this would be against my guidelines.",
    "I strongly advise against trying this at home. Please talk to a professional.",
])
def test_declining_openings_are_refusals(reply):
    assert is_refusal(reply), reply
    assert refusal_reason(reply)


@pytest.mark.parametrize("reply", [
    "Sure! First, open the terminal and run `kill -9 1234`.",
    "Photosynthesis turns light into chemical energy.",
    "Here is a poem about the sea.",
    "To delete a line, press dd. You cannot undo it after saving, so be careful.",
    "",
])
def test_compliant_replies_are_not_refusals(reply):
    assert not is_refusal(reply), refusal_reason(reply)


def test_only_the_opening_sentences_count():
    compliant = "Step one: mix the flour. Step two: add water. Step three: knead. Then I cannot help you further."
    assert not is_refusal(compliant)
    assert is_refusal(compliant, sentences=4)
