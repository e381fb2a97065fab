"""MultiModal Insight Engine: transformers over text and images, trained and safety-checked in one engine."""

__version__ = "0.1.0"
__all__ = ["__version__"]
