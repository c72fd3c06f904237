"""The invoice state machine: one table, and nothing outside it is allowed."""
from __future__ import annotations

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


def format_number(fmt: str, seq: int, year: int, month: int) -> str:
    """``INV-{year}-{seq:05d}`` with seq=7 in 2026 → ``INV-2026-00007``."""
    return fmt.format(seq=seq, year=year, month=month)
