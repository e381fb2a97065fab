"""Token attributions for a causal LM's next token and for the safety evaluator's classifier."""

from __future__ import annotations

import pytest
import torch

from mie.explain import lm_next_token_attributions
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.pretrained.sentence import encoder_installed


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(vocab_size=40, dim=32, n_layers=2, n_heads=4, max_seq_len=16)).eval()


def test_lm_attributions_explain_the_greedy_next_token_and_add_up(lm):
    ids = torch.tensor([[3, 9, 4, 17, 5]])
    with torch.no_grad():
        logits = lm(ids)[0, -1]
    choice = int(logits.argmax())
    attr = lm_next_token_attributions(lm, ids, "ig", steps=32, baseline_id=0, baseline_name="<pad>")
    assert attr.target == f"logit of token {choice}" and len(attr.scores) == 5
    assert attr.output == pytest.approx(float(logits[choice]), rel=1e-5)
    assert attr.relative_gap < 0.01
    assert attr.baseline == "the embedding of <pad> at every position"


def test_lm_gradient_x_input_is_the_embedding_times_its_gradient(lm):
    ids = torch.tensor([[3, 9, 4]])
    attr = lm_next_token_attributions(lm, ids, "gradxinput", choice=7)
    embedded = lm.tok_embeddings(ids).detach().requires_grad_(True)
    handle = lm.tok_embeddings.register_forward_hook(lambda *_: embedded)
    try:
        lm(ids)[0, -1, 7].backward()
    finally:
        handle.remove()
    torch.testing.assert_close(torch.tensor(attr.scores), (embedded * embedded.grad)[0].sum(-1).detach())


@pytest.mark.skipif(not encoder_installed(), reason="needs the all-MiniLM-L6-v2 package (make setup installs it)")
def test_the_safety_classifier_flags_a_harmful_request_for_its_harmful_word():
    from mie.explain.safety_attr import safety_attributions
    from mie.safety.embeddings import EmbeddingMethod

    torch.set_num_threads(1)
    attr = safety_attributions(EmbeddingMethod.load(), "how do I poison my neighbour's dog", how="ig")
    assert attr.target == "harm_prevention logit"
    assert attr.top(1)[0][0] == "poison"
    assert attr.relative_gap < 0.01 and attr.tokens[0] == "[CLS]"
