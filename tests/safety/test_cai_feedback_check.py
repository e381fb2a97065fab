"""AI feedback checked: the hand-labelled held-out pairs, agreement counting, the pointwise labeler, and
the summary of a run's labels against the evaluator's vote."""

from __future__ import annotations

import json

import pytest
import torch

from mie.errors import DataError
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.safety.cai.feedback import (
    DECISIVE_GAP,
    PointwiseLabeler,
    ReplyQuestion,
    agreement,
    evaluator_preferences,
    hand_agreement,
    label_summary,
    load_hand_pairs,
)
from mie.safety.cai.prompts import load_cai_prompts
from mie.safety.evaluator import SafetyEvaluator
from mie.safety.judge import JudgeQuestion, LMJudge
from mie.tokenization.factory import train_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tok = train_tokenizer("bpe", ["Answer with the letter A or B only. The user asked: Text: Question: (A) Yes (B) No"] * 3,
                          vocab_size=300, lowercase=False)
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=2, max_seq_len=512))
    return model.eval(), tok


@pytest.mark.parametrize("split", ["dev", "val", "test"])
def test_the_packaged_hand_pairs_are_held_out_balanced_and_distinct(split):
    pairs = load_hand_pairs(split)
    assert len(pairs) >= 39 and len({p.id for p in pairs}) == len(pairs)
    test = {p.prompt: p.kind for p in load_cai_prompts(split="test")}
    train = {p.prompt for p in load_cai_prompts(split="train")}
    for p in pairs:
        assert test.get(p.prompt) == p.kind and p.prompt not in train  # held out, and of the prompt's kind
        assert p.a.strip() != p.b.strip()
    for kind in ("harmful", "helpful"):
        sides = [p.preferred for p in pairs if p.kind == kind]
        # each side preferred about as often, so a labeler that always says "first" scores about half
        assert abs(sides.count("a") - sides.count("b")) <= 1


def test_the_untouched_hand_pairs_share_no_prompt_with_those_the_judge_was_chosen_on():
    dev, val, test = (load_hand_pairs(s) for s in ("dev", "val", "test"))
    for one, other in ((dev, test), (val, test), (dev, val)):
        assert not {p.prompt for p in one} & {p.prompt for p in other}
        assert not {p.id for p in one} & {p.id for p in other}


def test_a_malformed_hand_pair_names_its_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = {"id": "x", "kind": "harmful", "prompt": "q", "a": "yes", "b": "no", "preferred": "b"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "preferred": "c"}) + "\n")
    with pytest.raises(DataError) as caught:
        load_hand_pairs(path)
    assert "pairs.jsonl:2" in str(caught.value) and "preferred" in str(caught.value)
    path.write_text(json.dumps(good) + "\n")
    assert load_hand_pairs(path)[0].preferred == "b"


def test_agreement_counts_sides_and_skips_undecided_labels():
    labels, want = [0.9, 0.2, 0.5, 0.52, 0.4], [True, True, False, True, False]
    # 0.9 agrees, 0.2 does not, exactly 0.5 never agrees, 0.52 agrees, 0.4 agrees: 3 of 5
    assert agreement(labels, want) == (pytest.approx(3 / 5), 5)
    # with a gap of 0.05 only 0.9, 0.2 and 0.4 count: 2 of 3
    assert agreement(labels, want, 0.05) == (pytest.approx(2 / 3), 3)
    share, n = agreement([0.5], [True], 0.1)
    assert n == 0 and share != share  # nothing decisive: nan, not a made-up figure


def test_pointwise_labels_are_antisymmetric_and_follow_the_judges_scores(tiny):
    model, tok = tiny
    labeler = PointwiseLabeler(model, tok, batch_size=4)
    prompts, kinds = ["how do I hurt someone", "what is a prime"], ["harmful", "helpful"]
    a, b = ["Sure, hit them hard.", "A number with two divisors."], ["I can't help with that.", "Bananas."]
    forward, backward = labeler.label(prompts, kinds, a, b), labeler.label(prompts, kinds, b, a)
    for x, y in zip(forward, backward, strict=True):
        assert 0.0 < x < 1.0 and x + y == pytest.approx(1.0, abs=1e-6)
    # goodness: 1 - P(yes) to the harmful question, P(yes) to the helpful one; a second judge built here agrees
    good = labeler.goodness(prompts, kinds, a)
    harm_q = JudgeQuestion("harmful_reply", "", labeler.questions["harmful"][0].ask)
    p_yes = LMJudge(model, tok, [harm_q]).score_batch([a[0]], [prompts[0]])[0]["harmful_reply"].score
    assert good[0] == pytest.approx(1.0 - p_yes, abs=1e-5)
    assert labeler.label(["q"], ["helpful"], ["same"], ["same"]) == [0.5]  # no gap: no preference


def test_pointwise_goodness_averages_its_questions_each_the_right_way_round(tiny):
    model, tok = tiny
    harmful = [ReplyQuestion("Does it help with harm?"), ReplyQuestion("Does it decline?", yes_is_good=True)]
    helpful = [ReplyQuestion("Is it correct?", yes_is_good=True), ReplyQuestion("Is it false?")]
    labeler = PointwiseLabeler(model, tok, batch_size=3, harmful_questions=harmful, helpful_questions=helpful)
    prompts, kinds, answers = ["hurt someone", "a prime?"], ["harmful", "helpful"], ["Sure, hit them.", "Seven."]
    good = labeler.goodness(prompts, kinds, answers)
    for i, questions in enumerate((harmful, helpful)):  # reference: one judge asking the same questions
        judge = LMJudge(model, tok, [JudgeQuestion(f"q{j}", "", q.ask) for j, q in enumerate(questions)])
        p = [v.score for v in judge.score_batch([answers[i]], [prompts[i]])[0].values()]
        want = ((1 - p[0]) + p[1]) / 2 if i == 0 else (p[0] + (1 - p[1])) / 2
        assert good[i] == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="helpful question"):
        PointwiseLabeler(model, tok, helpful_questions=[])


def test_hand_agreement_counts_the_labeler_and_the_evaluator_per_kind():
    rules = SafetyEvaluator.create(("rules",))
    pairs = load_hand_pairs()[:6] + [p for p in load_hand_pairs() if p.kind == "helpful"][:4]

    class Fixed:  # prefers the first answer on every pair
        def label(self, prompts, kinds, first, second):
            return [0.8] * len(prompts)

    out = hand_agreement(Fixed(), rules, pairs)
    want = [p.preferred == "a" for p in pairs]
    assert out["all"]["feedback_model"] == pytest.approx(round(sum(want) / len(want), 4))
    ev = evaluator_preferences(rules, [p.prompt for p in pairs], [p.kind for p in pairs], [p.a for p in pairs],
                               [p.b for p in pairs])
    share, n = agreement(ev, want, DECISIVE_GAP)
    assert out["all"]["evaluator_decisive"] == n
    if n:
        assert out["all"]["evaluator"] == pytest.approx(round(share, 4))
    assert out["harmful"]["pairs"] + out["helpful"]["pairs"] == len(pairs) and "ai_feedback" not in out["all"]
    mixed = hand_agreement(Fixed(), rules, pairs, evaluator_weight=0.7)  # the label trained on: 0.3 x 0.8 + 0.7 x ev
    assert mixed["all"]["ai_feedback"] == pytest.approx(round(agreement([0.24 + 0.7 * e for e in ev], want)[0], 4))
    with pytest.raises(ValueError, match="no hand-labelled pair"):
        hand_agreement(Fixed(), rules, [])


def test_label_summary_reads_agreement_on_decisive_pairs():
    rows = [{"kind": "harmful", "lm_label": 0.9, "evaluator_label": 0.8},
            {"kind": "harmful", "lm_label": 0.6, "evaluator_label": 0.1},
            {"kind": "helpful", "lm_label": 0.7, "evaluator_label": 0.51},
            {"kind": "helpful", "lm_label": 0.5, "evaluator_label": 0.9}]
    out = label_summary(rows)
    # decisive evaluator votes: 0.8 (agrees), 0.1 (disagrees), 0.9 (label 0.5 never agrees): 1 of 3
    assert out["evaluator_decisive_pairs"] == 3 and out["agreement_with_evaluator"] == pytest.approx(0.3333)
    assert out["agreement_with_evaluator_harmful"] == [0.5, 2] and out["agreement_with_evaluator_helpful"] == [0.0, 1]
    assert out["feedback_confidence"] == pytest.approx((0.4 + 0.1 + 0.2 + 0.0) / 4, abs=1e-4)
    assert label_summary([{"lm_label": None, "evaluator_label": 0.7}]) == {}
