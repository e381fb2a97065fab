"""The seq2seq recipe: an encoder-decoder translation model on a parallel corpus (by default English ->
German pairs built from this machine's gettext catalogs), scored with BLEU and chrF beside baselines."""

from mie.recipes.seq2seq.config import DecodeConfig, Seq2SeqRecipeConfig, TranslationDataConfig, check_config
from mie.recipes.seq2seq.run import (
    Seq2SeqRunResult,
    evaluate,
    load_seq2seq_run,
    print_results,
    translate_texts,
)
from mie.recipes.seq2seq.train import train

Config = Seq2SeqRecipeConfig

__all__ = ["Config", "DecodeConfig", "Seq2SeqRecipeConfig", "Seq2SeqRunResult", "TranslationDataConfig",
           "check_config", "evaluate", "load_seq2seq_run", "print_results", "train", "translate_texts"]
