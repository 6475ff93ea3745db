"""Text of ngspice decks: exact numbers, safe ``.include`` lines, comment headers.

Every number is validated finite and written with ``repr(float(x))`` (an exact round
trip); user text only lands in ``*`` comment lines after it was checked to be one line.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

import numpy as np

__all__ = ["fmt", "fmt_time", "include_line", "header_lines"]

_HEADER_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")
_MAX_HEADER_VALUE = 200
_MAX_HEADER_KEY = 64


def fmt(x, name: str = "value") -> str:
    """``repr(float(x))`` of a finite real number (ValueError for NaN/inf)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.floating,
                                                             np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return repr(v)


def fmt_time(t) -> str:
    """A time rounded to 12 significant digits: ``4e-06 + 1e-09`` prints as 4.001e-06.

    (Stimulus steps are longer than the rise time, >= 1e-12 of the step, so the rounding
    can neither reorder nor merge points.)
    """
    return fmt(float(f"{float(t):.12g}"))


def _check_path_text(text: str) -> None:
    """ValueError if a path, as written or as it will land in the deck, holds quotes,
    newlines or control characters."""
    if any(c in text for c in "\"'\n\r") or not text.isprintable():
        raise ValueError(f"model library path contains quotes, newlines or control "
                         f"characters: {text!r}")


def include_line(path, relative_to=None) -> str:
    """A safe ``.include "<path>"`` line (rejects quotes, newlines, control chars).

    The path is absolute, or relative to the folder ``relative_to`` (where the deck will be
    written: ngspice resolves a relative ``.include`` from the including deck's folder), so
    that a deck and the model library can move together.
    """
    _check_path_text(str(path))
    target = Path(path).expanduser().resolve()
    text = str(target)
    if relative_to is not None:
        text = os.path.relpath(target, Path(relative_to).expanduser().resolve())
    _check_path_text(text)
    if not target.is_file():
        raise FileNotFoundError(f"model library not found: {target}")
    return f'.include "{text}"'


def header_lines(header) -> list[str]:
    """Descriptive ``* key: value`` comment lines from a dict (validated, truncated)."""
    if header is None:
        return []
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    lines = []
    for key, value in header.items():
        if not isinstance(key, str) or not _HEADER_KEY.fullmatch(key) \
                or len(key) > _MAX_HEADER_KEY:
            raise ValueError(f"header key {key!r} must match ^[A-Za-z_][A-Za-z0-9_ ]*$ "
                             f"(at most {_MAX_HEADER_KEY} characters)")
        if isinstance(value, (bool, np.bool_)):
            text = str(bool(value))
        elif isinstance(value, (numbers.Integral, np.integer)):
            text = str(int(value))
        elif isinstance(value, (numbers.Real, np.floating)):
            text = fmt(value, f"header[{key!r}]")
        elif isinstance(value, str):
            if not value.isprintable():
                raise ValueError(f"header[{key!r}] must be one line of printable characters")
            text = value if len(value) <= _MAX_HEADER_VALUE else \
                value[:_MAX_HEADER_VALUE - 3] + "..."
        else:
            raise TypeError(f"header[{key!r}] must be a number or a string, "
                            f"got {type(value).__name__}")
        lines.append(f"* {key}: {text}")
    return lines
