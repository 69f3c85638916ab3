"""What the command line asks of every benchmark group."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool = False
    """A smoke run: few frames, one repetition, short windows."""
    frames: int = 0
    """Frames measured per row (transport), per size (latency) or per stream (capacity); 0 = default."""
    repeat: int = 0
    """Repetitions of each transport row (the median is reported); 0 = default."""
    minutes: float = 0.0
    """How long the soak group keeps its streams running; 0 = default."""
    cycles: int = 0
    """Start/stop cycles of the soak group's churn part; 0 = default."""
    results_dir: Path | None = None
    """Where <group>.json goes; None = do not write."""
    verbose: bool = True
    started: float = field(default_factory=time.monotonic)

    def progress(self, message: str) -> None:
        """One line on stderr saying what has just been measured."""
        if self.verbose:
            print(f"[{time.monotonic() - self.started:6.1f} s] {message}", file=sys.stderr, flush=True)
