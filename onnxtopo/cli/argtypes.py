"""argparse types shared by the subcommands: each turns a bad value into a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math


def _parse(text: str, kind, what: str, hint: str = ""):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}{hint}") from None


def positive_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def finite(text: str) -> float:
    value = _parse(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def percentile(text: str) -> float:
    value = finite(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 100, got {text!r}")
    return value


def tolerance(text: str) -> float:
    value = _parse(text, float, "a number", " (use e.g. 1e-4, or inf to disable)")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a tolerance must be ≥ 0, got {text}")
    return value


def size(text: str):
    """A memory size such as 4G, 500M or 123456 (bytes); 'auto' or 'none'."""
    text = text.strip().lower()
    if text in ("auto", "none"):
        return text
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    try:
        value = int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)
    except (ValueError, OverflowError):
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 4G, 500M, auto or none)")
    return value
