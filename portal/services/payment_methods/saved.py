"""A client's saved payment methods, read: which are active, the default, what can pay which currency,
how each is named. Every function takes the client's id: another client's method is NotFound.
"""
from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Client, Contact, PaymentMethod
from portal.services import locks, restrictions
from portal.services.errors import NotFound, ServiceError
from portal.services.events import SYSTEM, Actor, rollback
from portal.services.settings import get_business

TYPE_LABELS = {"card": "Card", "us_bank_account": "US bank account", "sepa_debit": "SEPA Direct Debit"}
BRAND_LABELS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
                "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay"}


def actor_of(contact: Contact | None) -> Actor:
    return Actor.of(contact) if contact is not None else SYSTEM


def get_client(client_id: int, lock: bool = False) -> Client:
    query = select(Client).where(Client.id == client_id)
    if lock:
        query = locks.for_update(query)
    client = db.session.scalar(query)
    if client is None:
        rollback()
        raise NotFound("No such client.")
    return client


def ensure_allowed(client: Client, action: str) -> None:
    """A restricted client's contacts may be refused ``action`` (locks are released first)."""
    try:
        restrictions.ensure_allowed(client, action)
    except ServiceError:
        rollback()
        raise


def get_method(client_id: int, method_id: int, lock: bool = False) -> PaymentMethod:
    """One of the client's saved methods that is not removed; anything else is NotFound."""
    query = select(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.client_id == client_id,
                                        PaymentMethod.removed_at.is_(None))
    if lock:
        query = locks.for_update(query)
    row = db.session.scalar(query)
    if row is None:
        rollback()
        raise NotFound("No such payment method.")
    return row


def active_methods(client_id: int):
    return select(PaymentMethod).where(PaymentMethod.client_id == client_id, PaymentMethod.removed_at.is_(None))


def client_methods(client_id: int) -> list[PaymentMethod]:
    """The client's saved methods, not removed: the default first, then newest first."""
    return list(db.session.scalars(active_methods(client_id).order_by(
        PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc(), PaymentMethod.id.desc())))


def default_method(client_id: int) -> PaymentMethod | None:
    """What autopay and "Attempt card" charge: the client's default saved method (None: none)."""
    return db.session.scalar(active_methods(client_id).where(PaymentMethod.is_default.is_(True))
                             .order_by(PaymentMethod.id.desc()).limit(1))


def methods_for(currency: str) -> list[str]:
    """The methods enabled in settings that exist for the currency (bank debits are per currency)."""
    business = get_business()
    methods = ["card"] if business.accept_card else []
    if currency == "EUR" and business.accept_sepa_debit:
        methods.append("sepa_debit")
    if currency == "USD" and business.accept_us_bank_account:
        methods.append("us_bank_account")
    return methods


def method_fits(method, currency: str) -> bool:
    """Whether a saved method can be charged for an amount in ``currency`` on today's gateway."""
    if method is None or method.removed_at is not None or method.gateway != get_gateway().name:
        return False
    if method.type == "sepa_debit":
        return currency == "EUR"
    if method.type == "us_bank_account":
        return currency == "USD"
    return True


def usable_method(client_id: int, currency: str):
    """The client's default saved method if it can pay in ``currency`` (else None)."""
    method = default_method(client_id)
    return method if method_fits(method, currency) else None


def method_label(method) -> str:
    """``VISA •••• 4242`` for a card, ``<bank> •••• 6789`` for an account."""
    if method.type == "card":
        return f"{(method.brand or 'card').upper()} •••• {method.last4 or '????'}"
    return f"{method.bank_name or 'Bank account'} •••• {method.last4 or '????'}"


def accepted_types(client: Client) -> list[str]:
    """The method types the business accepts for the client's currency (as on the payment page)."""
    return methods_for(client.currency or get_business().currency)


def describe(method: PaymentMethod) -> str:
    """"Visa ending 4242, expires 12/2034" / "STRIPE TEST BANK ending 6789": for emails and events."""
    if method.type == "card":
        brand = BRAND_LABELS.get(method.brand or "", (method.brand or "Card").title())
        text = f"{brand} ending {method.last4}"
        if method.exp_month and method.exp_year:
            text += f", expires {method.exp_month:02d}/{method.exp_year}"
        return text
    return f"{method.bank_name or TYPE_LABELS.get(method.type, 'Bank account')} ending {method.last4}"
