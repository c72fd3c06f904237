"""Staff's custom credits and one-time charges on a client's balance. The balance goes below zero
only through a one-time charge; nothing else takes more than the balance holds.
"""
from __future__ import annotations

from portal.billing.money import MoneyError, to_minor, valid_currency
from portal.extensions import db
from portal.models import Client, CreditEntry
from portal.services.credits.ledger import add_entry, default_currency
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit

# Staff: custom credits and one-time charges ----------------------------------------------------

MAX_AMOUNT = 100_000_000_000_000  # minor units; well within the 8-byte money columns
MAX_DESCRIPTION = 500


class CreditInvalid(ServiceError):
    """Bad input on the "Add credit" / "Add one-time charge" forms: ``errors`` maps a field
    (``amount``, ``currency``, ``description``) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


def get_client(client_id: int) -> Client:
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


def parse_staff_entry(client: Client, amount_text: str | None, currency: str | None,
                       description: str | None) -> tuple[int, str, str]:
    """What staff typed → (minor units > 0, currency, description); every bad field at once."""
    errors: dict[str, str] = {}
    code = (currency or "").strip().upper() or default_currency(client)
    amount = 0
    if not valid_currency(code):
        errors["currency"] = "Use a three-letter currency code, like EUR or USD."
    text = (amount_text or "").strip()
    if not text:
        errors["amount"] = "Enter an amount."
    elif "currency" not in errors:
        try:
            amount = to_minor(text, code)
        except MoneyError as exc:
            errors["amount"] = ("That amount is too large." if exc.reason == "range"
                                else "Use an amount like 25.00.")
        else:
            if amount <= 0:
                errors["amount"] = "Enter an amount above zero."
            elif amount > MAX_AMOUNT:
                errors["amount"] = "That amount is too large."
    said = (description or "").strip()
    if not said:
        errors["description"] = "Say what it is for: the client sees this on their credit page."
    elif len(said) > MAX_DESCRIPTION:
        errors["description"] = f"Keep it under {MAX_DESCRIPTION} characters."
    if errors:
        raise CreditInvalid(errors)
    return amount, code, said


def add_credit(client_id: int, amount_text: str | None, currency: str | None, description: str | None,
               actor: Actor) -> CreditEntry:
    """Staff give the client credit (a ``credit`` row, +). The currency defaults to the client's."""
    client = get_client(client_id)
    amount, code, said = parse_staff_entry(client, amount_text, currency, description)
    entry = add_entry(client.id, code, amount, "credit", actor, said)
    commit()
    return entry


def add_charge(client_id: int, amount_text: str | None, currency: str | None, description: str | None,
               actor: Actor) -> CreditEntry:
    """Staff charge the client's credit balance once (a ``charge`` row, −).

    It uses up credit the client has; beyond that the balance goes below zero, which the pages
    show as owed, and later credit (an overpayment, a credit, a credit note) pays it off first.
    A charge is the only thing that may take a balance below zero."""
    client = get_client(client_id)
    amount, code, said = parse_staff_entry(client, amount_text, currency, description)
    entry = add_entry(client.id, code, -amount, "charge", actor, said)
    commit()
    return entry
