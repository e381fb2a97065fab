"""Validation that translates: the seq2seq task's NLL plus greedy BLEU and chrF of some valid pairs, so the
best checkpoint can be the one that translates best rather than the one of lowest NLL (they part ways
once the model over-fits its training packages: NLL rises while BLEU may still climb, or the reverse)."""

from __future__ import annotations

from typing import Any

from torch import nn

from mie.data.placeholders import survival_rate
from mie.evaluation.translation import translation_scores
from mie.recipes.seq2seq.config import Seq2SeqRecipeConfig
from mie.recipes.seq2seq.data import Pairs
from mie.recipes.seq2seq.run import translate_texts
from mie.training.tasks.seq2seq import Seq2SeqTask


class TranslatingSeq2SeqTask(Seq2SeqTask):
    """:class:`Seq2SeqTask` whose validation also decodes ``pairs`` greedily: ``val/bleu``, ``val/chrf``
    and ``val/placeholders`` (the share of messages with placeholders that keep them all)."""

    def __init__(self, model: nn.Module, tokenizer: Any, config: Seq2SeqRecipeConfig, pairs: Pairs) -> None:
        super().__init__(model, pad_id=tokenizer.pad_id, label_smoothing=config.label_smoothing)
        self.tokenizer, self.config, self.pairs = tokenizer, config, pairs

    def validation_metrics(self) -> dict[str, float]:
        """The NLL metrics and, when there are pairs to decode, their BLEU, chrF and placeholder survival."""
        metrics = super().validation_metrics()
        if not metrics or not self.pairs:
            return metrics
        sources = [s for s, _ in self.pairs]
        hyps = translate_texts(self.model, self.tokenizer, sources, self.config, beam=1)
        scores = translation_scores(hyps, [t for _, t in self.pairs])
        return {**metrics, **scores, "placeholders": survival_rate(sources, hyps)[0]}
