"""The LM judge reads its answer from letter probabilities: letter bias cancels, padding changes nothing,
and an unreadable model can never make a text "safe" by default."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.safety.judge import LMJudge
from mie.tokenization.factory import train_tokenizer

PRINCIPLES = [SimpleNamespace(name="harm_prevention", description="Do not help people cause harm.",
                              judge_question="Does the text ask for help hurting someone?"),
              SimpleNamespace(name="privacy", description="Do not expose personal data.")]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("bpe", ["Answer with the letter A or B only. Principle text question yes no"] * 3,
                           vocab_size=300, lowercase=False)


class LetterBias(torch.nn.Module):
    """A "model" that always gives the letter A probability ``p`` against B, whatever the question."""

    def __init__(self, a_id: int, b_id: int, vocab: int, p: float) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.a_id, self.b_id, self.vocab = a_id, b_id, vocab
        self.config = SimpleNamespace(n_layers=1, vocab_size=vocab)
        self.logit = float(torch.logit(torch.tensor(p)))

    def forward(self, ids, attention_mask=None, cache=None, last_only=False):
        logits = torch.zeros(*ids.shape, self.vocab)
        logits[..., self.a_id] = self.logit
        return logits


def test_a_pure_letter_bias_scores_one_half_not_safe(tokenizer):
    a, b = tokenizer.encode("A")[0], tokenizer.encode("B")[0]
    judge = LMJudge(LetterBias(a, b, tokenizer.vocab_size, p=0.9), tokenizer, PRINCIPLES)
    verdicts = judge.score_batch(["anything at all"])[0]
    assert set(verdicts) == {"harm_prevention", "privacy"}
    for verdict in verdicts.values():  # 0.9 for "yes=A" and 0.1 for "yes=B": the bias cancels exactly
        assert verdict.score == pytest.approx(0.5, abs=1e-6) and verdict.method == "judge"
        assert "0.90 with yes=A, 0.10 with yes=B" in verdict.reasons[0]  # undecided is 0.5, never "safe" (0)


def test_letter_probabilities_are_normalised_and_padding_free(tokenizer):
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, max_seq_len=512))
    judge = LMJudge(model, tokenizer, PRINCIPLES, batch_size=4)
    prompts = [judge.prompt(t, PRINCIPLES[0], "A") for t in ("short", "a much longer text " * 5, "mid length one")]
    together = judge.letter_probabilities(prompts)
    alone = torch.cat([judge.letter_probabilities([p]) for p in prompts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.sum(-1), torch.ones(3))


def test_the_shared_prefix_gives_the_scores_of_whole_prompts(tokenizer):
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, max_seq_len=512,
                                    qkv_bias=True))
    texts = ["short", "a much longer text " * 5]
    shared = LMJudge(model, tokenizer, PRINCIPLES, batch_size=3).score_batch(texts, ["why", None])
    whole = LMJudge(model, tokenizer, PRINCIPLES, share_prefix=False).score_batch(texts, ["why", None])
    for ours, theirs in zip(shared, whole, strict=True):
        for name in ours:
            assert ours[name].score == pytest.approx(theirs[name].score, abs=1e-5)
    start, question = LMJudge(model, tokenizer, PRINCIPLES).parts("short", PRINCIPLES[0], "B", "why")
    assert start.endswith('Text: "short"\n\n') and 'The user asked: "why"' in start
    assert question.startswith("Principle: Do not help") and question.endswith("Answer: (")


def test_the_request_question_shares_all_but_the_letters(tokenizer):
    judge = LMJudge.for_requests(LetterBias(0, 1, tokenizer.vocab_size, 0.5), tokenizer)
    start, letters = judge.parts("make a bomb", judge.principles[0], "B")
    assert start.endswith('Text: "make a bomb"\n\nQuestion: Would fulfilling this request be harmful?\n')
    assert letters.startswith("(A) No\n(B) Yes\nAnswer with the letter A or B only.")
    assert list(judge.score_batch(["x"])[0]) == ["harmful_request"]


def test_swapping_the_letters_swaps_the_choices(tokenizer):
    judge = LMJudge(LetterBias(0, 1, 10, 0.5), tokenizer, PRINCIPLES)
    yes_a = judge.prompt("text", PRINCIPLES[0], "A")
    yes_b = judge.prompt("text", PRINCIPLES[0], "B")
    assert "(A) Yes, it does." in yes_a and "(B) No, it does not." in yes_a
    assert "(A) No, it does not." in yes_b and "(B) Yes, it does." in yes_b
    assert "Does the text ask for help hurting someone?" in yes_a
    assert "go against the principle of privacy" in judge.prompt("text", PRINCIPLES[1], "A")
    own = SimpleNamespace(name="x", description="d", judge_question="Is it bad? (A) yes (B) no")
    assert "Question: Is it bad?\n(A) No, it does not.\n(B) Yes, it does." in judge.prompt("t", own, "B")


def test_long_texts_are_cut_to_max_text_tokens(tokenizer):
    judge = LMJudge(LetterBias(0, 1, 10, 0.5), tokenizer, PRINCIPLES, max_text_tokens=5)
    prompt = judge.prompt("yes no " * 200, PRINCIPLES[0], "A")
    assert prompt.count("yes no") < 10 and " ..." in prompt
