"""Ctrl-C during training: the first asks the trainer to stop at the next step boundary and save a
resumable checkpoint; a second one interrupts at once (the last published checkpoint stays valid)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import torch

from mie.training.distributed import broadcast_int, is_distributed

logger = logging.getLogger(__name__)


class GracefulInterrupt:
    """Context manager that turns the first SIGINT into a request (``requested``) and restores the
    previous handler on exit. Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second Ctrl-C: the user wants out now
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("interrupted: finishing this step and saving a resumable checkpoint "
                       "(press Ctrl-C again to quit at once)")

    def stop_now(self, logged: bool, device: torch.device | None = None) -> bool:
        """Whether to stop at this step boundary. Under DDP every rank must stop at the same step, so
        rank 0's answer is broadcast, on logged steps only (like the time budget)."""
        if not is_distributed():
            return self.requested
        return logged and bool(broadcast_int(int(self.requested), device))
