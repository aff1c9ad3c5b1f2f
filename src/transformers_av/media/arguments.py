"""Checks of the numeric arguments the media loaders share (rates, durations, counts), with messages that name the
argument."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["optional_count", "optional_positive", "positive_fraction"]


def positive_fraction(value: Any, name: str) -> Fraction:
    """`value` (a positive int, float or `Fraction`) as an exact fraction, so frame times can be compared without
    float rounding (29.97 fps stays 2997/100)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a positive number, got {value!r} ({type(value).__name__})")
    if isinstance(value, Fraction):
        result = value
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"`{name}` must be a finite positive number, got {value!r}")
        # exact for integers and "decimal" rates such as 29.97; limit_denominator keeps 1/3-style floats sane
        result = Fraction(number).limit_denominator(1_000_000)
    if result <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return result


def optional_positive(value: Any, name: str) -> float | None:
    """`None`, or `value` checked to be a finite number > 0."""
    if value is None:
        return None
    return float(positive_fraction(value, name))


def optional_count(value: Any, name: str) -> int | None:
    """`None`, or `value` checked to be an int >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1, got {value!r}")
    return int(value)
