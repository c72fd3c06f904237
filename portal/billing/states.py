"""The invoice state machine: one table, and nothing outside it is allowed."""
from __future__ import annotations

import re
import string

DRAFT, OPEN, OVERDUE, PAID, VOID, UNCOLLECTIBLE = "draft", "open", "overdue", "paid", "void", "uncollectible"
STATES = (DRAFT, OPEN, OVERDUE, PAID, VOID, UNCOLLECTIBLE)

# What staff and clients see.
LABELS = {
    DRAFT: "Draft",
    OPEN: "Sent",
    OVERDUE: "Overdue",
    PAID: "Paid",
    VOID: "Cancelled",
    UNCOLLECTIBLE: "Uncollectible",
}

TRANSITIONS: dict[tuple[str, str], str] = {
    (DRAFT, "finalize"): OPEN,
    (OPEN, "mark_overdue"): OVERDUE,
    (OPEN, "pay"): PAID,
    (OVERDUE, "pay"): PAID,
    (UNCOLLECTIBLE, "pay"): PAID,
    # Money given back without a credit note: the client owes it again.
    (PAID, "reopen"): OPEN,
    (OPEN, "void"): VOID,
    (OVERDUE, "void"): VOID,
    (UNCOLLECTIBLE, "void"): VOID,
    (OPEN, "mark_uncollectible"): UNCOLLECTIBLE,
    (OVERDUE, "mark_uncollectible"): UNCOLLECTIBLE,
}

ACTIONS = tuple(sorted({action for _, action in TRANSITIONS}))
FINALIZED = (OPEN, OVERDUE, PAID, VOID, UNCOLLECTIBLE)
PAYABLE = (OPEN, OVERDUE, UNCOLLECTIBLE)


class InvalidTransition(ValueError):
    def __init__(self, state: str, action: str):
        super().__init__(f"an invoice that is {LABELS.get(state, state)} cannot {action.replace('_', ' ')}")
        self.state = state
        self.action = action


def transition(state: str, action: str) -> str:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidTransition(state, action) from None


def can(state: str, action: str) -> bool:
    return (state, action) in TRANSITIONS


def is_editable(state: str) -> bool:
    """Only drafts change; finalized invoices are corrected by void + replacement or credit notes."""
    return state == DRAFT


NUMBER_FIELDS = ("seq", "year", "month")
MAX_FORMAT_WIDTH = 20
# Python's format-spec mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>\d*)[_,]?(?:\.(?P<precision>\d*))?[bcdeEfFgGnosxX%]?",
                   re.S)


def number_format_problem(fmt: str) -> str | None:
    """Why a numbering format's fields are not allowed: ``"field"`` (not {seq}, {year} or {month} with a
    plain spec) or ``"width"`` (a width or precision over ``MAX_FORMAT_WIDTH``); None when they are fine.
    Read from the text, nothing is formatted: ``{seq:>999999999}`` would allocate a gigabyte."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return "field"
    problem = None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in NUMBER_FIELDS or conversion not in (None, "s", "r", "a"):
            return "field"
        spec = spec or ""
        match = None if "{" in spec or "}" in spec else _SPEC.fullmatch(spec)
        if match is None:
            return "field"
        for part in ("width", "precision"):
            digits = match.group(part) or ""
            if len(digits) > 3 or (digits and int(digits) > MAX_FORMAT_WIDTH):
                problem = "width"
    return problem


def number_format_fields_ok(fmt: str) -> bool:
    return number_format_problem(fmt) is None


def format_number(fmt: str, seq: int, year: int, month: int) -> str:
    """``INV-{year}-{seq:05d}`` with seq=7 in 2026 → ``INV-2026-00007``."""
    if not number_format_fields_ok(fmt):
        raise ValueError(f"numbering format {fmt[:80]!r} is not allowed")
    return fmt.format(seq=seq, year=year, month=month)
