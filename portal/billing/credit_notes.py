"""How a credit note's amount may be split. Pure arithmetic: no database, no Flask.

A credit note takes ``amount = to_due + to_balance + to_refund + to_outside`` off a finalized
invoice:

- ``to_due`` lowers what is still owed (at most the current amount due);
- ``to_balance`` goes to the client's credit balance;
- ``to_refund`` is given back on one payment of the invoice (at most what that payment can
  still give back from this invoice);
- ``to_outside`` was settled outside the portal (recorded only).

The last three give back money the invoice *received*, so together they are at most what it
received (paid + credit applied) less the earlier credit notes' credit and outside parts
(earlier refunds already lowered the amount paid). All credit notes on an invoice together
are at most its total.
"""
from __future__ import annotations

from dataclasses import dataclass

from portal.billing.money import MoneyError, format_money, parse_amount

# A part can never be more than an invoice (500 lines of at most 10^14 minor units fit 8 bytes).
MAX_PART = 100_000_000_000_000
PARTS = ("to_due", "to_balance", "to_refund", "to_outside")
POST_PAYMENT = ("to_refund", "to_balance", "to_outside")


@dataclass(frozen=True)
class Split:
    to_due: int = 0
    to_balance: int = 0
    to_refund: int = 0
    to_outside: int = 0

    @property
    def amount(self) -> int:
        return self.to_due + self.to_balance + self.to_refund + self.to_outside

    @property
    def post_payment(self) -> int:
        return self.to_balance + self.to_refund + self.to_outside


@dataclass(frozen=True)
class Room:
    """What the invoice allows now (minor units)."""

    total: int                 # the invoice total
    amount_due: int            # what is still owed
    received: int              # amount paid + credit applied
    credited: int = 0          # earlier credit notes' amounts, summed
    credited_after_payment: int = 0  # earlier credit notes' to_balance + to_outside, summed
    refundable: int | None = None    # what the chosen payment can give back from this invoice; None: no payment


def parse_split(typed: dict[str, str], currency: str) -> tuple[Split, dict[str, str]]:
    """Typed amounts ("12.50", blank = 0) → a Split, and field errors for what could not be read."""
    values: dict[str, int] = {}
    errors: dict[str, str] = {}
    for part in PARTS:
        text = (typed.get(part) or "").strip()
        if not text:
            values[part] = 0
            continue
        try:
            values[part] = parse_amount(text, currency, max_minor=MAX_PART)
        except MoneyError as exc:
            errors[part] = {"negative": "Enter zero or more.",
                            "range": "That amount is too large."}.get(exc.reason, "Use an amount like 25.00.")
            values[part] = 0
    return Split(**values), errors


def check_split(split: Split, room: Room, currency: str, locale: str = "en_US") -> dict[str, str]:
    """Field errors (part → message) for a split the invoice cannot take; empty when it can."""
    def money(minor: int) -> str:
        return format_money(max(minor, 0), currency, locale)

    errors: dict[str, str] = {}
    for part in PARTS:
        if getattr(split, part) < 0:
            errors[part] = "Enter zero or more."
    if errors:
        return errors
    if split.amount <= 0:
        return {"amount": "Enter an amount above zero in at least one part."}
    if split.to_due > room.amount_due:
        errors["to_due"] = (f"At most {money(room.amount_due)} is due." if room.amount_due > 0
                            else "Nothing is due on this invoice.")
    if split.to_refund > 0:
        if room.refundable is None:
            errors["payment_id"] = "Choose the payment to refund."
        elif split.to_refund > room.refundable:
            errors["to_refund"] = f"At most {money(room.refundable)} of this payment can be refunded."
    received_left = room.received - room.credited_after_payment
    if split.post_payment > received_left:
        message = (f"The refund, credit and outside parts together can be at most {money(received_left)}: "
                   "what the invoice received, less earlier credit notes." if received_left > 0 else
                   "The invoice has received no money that a credit note could give back.")
        for part in POST_PAYMENT:
            if getattr(split, part) > 0 and part not in errors:
                errors[part] = message
                break
    left = room.total - room.credited
    if split.amount > left:
        errors["amount"] = (f"Credit notes on this invoice can total at most {money(room.total)}; "
                            f"{money(left)} is left." if left > 0 else
                            "Credit notes already cover this invoice's whole total.")
    return errors
