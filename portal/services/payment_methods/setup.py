"""Saving a payment method through a SetupIntent on the client's gateway customer
(``Client.gateway_customer_id``, created once). A method is stored once per SetupIntent
(``payment_method.gateway_setup_id`` is unique), so the sandbox's confirmation, Stripe's return and a
reload all end in the same row. The client's first method is the default.
"""
from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import PROCESSING, REQUIRES_ACTION, SUCCEEDED, GatewayError
from portal.models import Contact, PaymentMethod
from portal.services.errors import NotFound, ServiceError
from portal.services.events import SYSTEM, commit, record_event, rollback
from portal.services.payment_methods.saved import (
    accepted_types,
    actor_of,
    default_method,
    describe,
    ensure_allowed,
    get_client,
)

UNREACHABLE = "We couldn't reach the payment provider. Please try again in a moment."
# Which field of the add form a gateway refusal is about.
_FIELD_FOR_CODE = {
    "incorrect_number": "card_number", "invalid_number": "card_number", "card_declined": "card_number",
    "invalid_expiry_month": "expiry", "invalid_expiry_year": "expiry", "expired_card": "expiry",
    "incorrect_cvc": "cvc", "invalid_cvc": "cvc", "invalid_bank_account": "account",
}
_CVC = re.compile(r"\d{3,4}")


# The gateway customer and SetupIntents -------------------------------------------------------

def ours(gateway, customer_id: str | None) -> bool:
    """Whether a stored customer id belongs to the gateway in use (sandbox ids are marked)."""
    if not customer_id:
        return False
    return customer_id.startswith("cus_sbx_") == (gateway.name == "sandbox")


def ensure_customer(client_id: int) -> str:
    """The client's customer at the gateway, created once and kept on the client. Safe to call
    concurrently: the idempotency key comes from the client's id and details, and the row lock
    decides whose id is kept (the same customer when the details were the same)."""
    gateway = get_gateway()
    client = get_client(client_id)
    if ours(gateway, client.gateway_customer_id):
        return client.gateway_customer_id
    email = client.email or next((c.email for c in client.contacts if c.receives_invoices), None)
    digest = hashlib.sha256(f"{gateway.name}|{email}|{client.name}".encode()).hexdigest()[:12]
    try:
        customer_id = gateway.ensure_customer(f"client-{client.id}", email, client.name,
                                              f"client-{client.id}-customer-{digest}")
    except GatewayError as exc:
        raise ServiceError(UNREACHABLE) from exc
    client = get_client(client_id, lock=True)
    if ours(gateway, client.gateway_customer_id):
        commit()
        return client.gateway_customer_id
    client.gateway_customer_id = customer_id
    record_event("client.gateway_customer_created", "client", client.id, SYSTEM,
                 data={"gateway": gateway.name, "customer": customer_id})
    commit()
    return customer_id


def start_setup(client_id: int, contact: Contact | None) -> dict:
    """Start saving a method: a SetupIntent (off-session use) for the types the business accepts in
    the client's currency. Returns ``{"setup_intent_id", "client_secret", "types"}`` for Stripe's
    Payment Element. An unconfirmed SetupIntent costs nothing, so each start makes a new one (its
    random key still makes the library's own retries safe)."""
    client = get_client(client_id)
    if contact is not None:
        ensure_allowed(client, "payment_methods")
    types = accepted_types(client)
    if not types:
        raise ServiceError("No payment methods can be saved at the moment.")
    customer_id = ensure_customer(client_id)
    try:
        setup = get_gateway().create_setup_intent(
            customer_id, types, f"client-{client_id}-setup-{secrets.token_hex(8)}",
            {"client_id": str(client_id), "contact_id": str(contact.id) if contact is not None else ""})
    except GatewayError as exc:
        raise ServiceError(UNREACHABLE) from exc
    return {"setup_intent_id": setup.id, "client_secret": setup.client_secret, "types": types}


def add_in_sandbox(client_id: int, contact: Contact | None, method: str, number: str, expiry: str,
                   cvc: str | None = None) -> PaymentMethod:
    """Sandbox only: save a test card (number, MM/YY expiry, CVC) or test bank account, confirming
    on the server what Stripe.js would confirm in the browser. Bad input raises ServiceError naming
    the field (``method``, ``card_number``, ``expiry``, ``cvc``, ``account``); nothing is stored."""
    gateway = get_gateway()
    if gateway.name != "sandbox":
        raise ServiceError("Add your payment method with the secure form.")
    client = get_client(client_id)
    if contact is not None:
        ensure_allowed(client, "payment_methods")
    if method not in accepted_types(client):
        raise ServiceError("Choose what to add.", field="method")
    number = "".join((number or "").split()).replace("-", "")
    if method == "card":
        if not number:
            raise ServiceError("Enter the card number.", field="card_number")
        expiry = (expiry or "").strip()
        if not expiry:
            raise ServiceError("Enter the expiry date (MM/YY).", field="expiry")
        if cvc is not None and not _CVC.fullmatch(cvc.strip()):
            raise ServiceError("Enter the 3 or 4 digit security code (CVC).", field="cvc")
        details = f"card:{number}:{expiry}"
    else:
        if not number:
            raise ServiceError("Enter your IBAN." if method == "sepa_debit" else "Enter your account number.",
                               field="account")
        details = f"{method}:{number}"
    setup = start_setup(client_id, contact)
    digest = hashlib.sha256(details.encode()).hexdigest()[:12]
    try:
        confirmed = gateway.confirm_setup_intent(setup["setup_intent_id"], details,
                                                 f"{setup['setup_intent_id']}-confirm-{digest}")
    except GatewayError as exc:
        field = _FIELD_FOR_CODE.get(exc.code or "", "card_number" if method == "card" else "account")
        if method != "card" and field in ("card_number", "expiry", "cvc"):
            field = "account"
        raise ServiceError(exc.message, field=field) from exc
    return apply_setup_intent(client_id, confirmed.id, contact)


def add_method(client_id: int, contact: Contact | None, method: str, number: str, expiry: str,
               cvc: str | None = None) -> PaymentMethod | dict:
    """The portal's "Add": the sandbox saves what was typed here and now (returns the stored
    method); with Stripe it starts a SetupIntent and returns what the Payment Element needs
    (``start_setup``), the browser confirms, and ``apply_setup_intent`` stores it on return."""
    if get_gateway().name == "sandbox":
        return add_in_sandbox(client_id, contact, method, number, expiry, cvc)
    return start_setup(client_id, contact)


def apply_setup_intent(client_id: int, setup_intent_id: str, contact: Contact | None) -> PaymentMethod:
    """Store the method a succeeded SetupIntent saved (Stripe's return, the sandbox's confirm).

    Idempotent: one row per SetupIntent, whoever calls first. The SetupIntent must be this
    client's (its customer is the client's), else NotFound. One that did not succeed raises
    ServiceError saying why."""
    existing = db.session.scalar(select(PaymentMethod).where(PaymentMethod.gateway_setup_id == setup_intent_id))
    if existing is not None:
        if existing.client_id != client_id:
            raise NotFound("No such payment method.")
        return existing
    client = get_client(client_id)
    if contact is not None:
        ensure_allowed(client, "payment_methods")
    gateway = get_gateway()
    try:
        setup = gateway.retrieve_setup_intent(setup_intent_id)
    except GatewayError as exc:
        if exc.code == "resource_missing":
            raise NotFound("No such payment method.") from exc
        raise ServiceError(UNREACHABLE) from exc
    if not client.gateway_customer_id or setup.customer != client.gateway_customer_id:
        raise NotFound("No such payment method.")
    if setup.status in (PROCESSING, REQUIRES_ACTION):
        raise ServiceError("Your payment method is still being verified. It appears here once it is ready.")
    if setup.status != SUCCEEDED or not setup.payment_method:
        raise ServiceError(setup.error_message or "Your payment method was not saved. Nothing was charged.")
    try:
        saved = gateway.retrieve_payment_method(setup.payment_method)
    except GatewayError as exc:
        raise ServiceError(UNREACHABLE) from exc
    client = get_client(client_id, lock=True)  # one default per client, however many arrive at once
    existing = db.session.scalar(select(PaymentMethod).where(PaymentMethod.gateway_setup_id == setup_intent_id))
    if existing is not None:
        commit()
        return existing
    row = PaymentMethod(
        client_id=client.id, gateway=gateway.name, gateway_method_id=saved.id, gateway_setup_id=setup.id,
        type=saved.type, brand=saved.brand, last4=saved.last4, exp_month=saved.exp_month, exp_year=saved.exp_year,
        bank_name=saved.bank_name, is_default=default_method(client.id) is None,
        added_by_contact_id=contact.id if contact is not None else None, created_at=clock.now(),
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:  # stored meanwhile by another request for the same SetupIntent
        rollback()
        return db.session.scalars(select(PaymentMethod).where(PaymentMethod.gateway_setup_id == setup_intent_id)).one()
    record_event("payment_method.added", "client", client.id, actor_of(contact),
                 after={"payment_method_id": row.id, "default": row.is_default},
                 data={"payment_method_id": row.id, "type": row.type, "description": describe(row)})
    commit()
    return row
