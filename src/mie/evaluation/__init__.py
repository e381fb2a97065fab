"""Evaluation: image-text retrieval metrics, zero-shot classification, run reports and figures.

``mie.evaluation.plots`` is not imported here: it pulls in matplotlib, which only figure-making
code needs.
"""

from mie.evaluation.report import compare_results, format_metrics_table, load_results, write_report
from mie.evaluation.retrieval import (
    embed_batches,
    embed_images,
    embed_texts,
    evaluate_retrieval,
    median_rank,
    metrics_from_ranks,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_topk,
)
from mie.evaluation.zero_shot import average_prompt_embeddings, build_class_embeddings, zero_shot_classify

__all__ = [
    "average_prompt_embeddings",
    "build_class_embeddings",
    "compare_results",
    "embed_batches",
    "embed_images",
    "embed_texts",
    "evaluate_retrieval",
    "format_metrics_table",
    "load_results",
    "median_rank",
    "metrics_from_ranks",
    "retrieval_metrics",
    "retrieval_ranks",
    "retrieval_topk",
    "write_report",
    "zero_shot_classify",
]
