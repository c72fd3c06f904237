"""Whole numbers typed by people or put in URLs (row ids, page numbers), read one way everywhere.

``str.isdigit`` is not enough: "²" and "٣" are digits to it, and ``int()`` refuses the first; a
40-digit id overflows the database's integers. Only ASCII digits, at most 18 of them, are a number.
"""
from __future__ import annotations

MAX_DIGITS = 18  # below 2**63: fits every integer column


def whole_number(value) -> int | None:
    """``value`` (text or int) as a non-negative whole number, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10 ** MAX_DIGITS else None
    text = str(value or "").strip()
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def row_id(value) -> int | None:
    """A row id (1 or more), or None for anything else."""
    number = whole_number(value)
    return number if number else None
