"""argparse value types shared by the subcommands: a bad value is a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """A finite number (NaN and infinities are refused: a window of NaN paints one colour)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A time limit in seconds: finite and above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value
