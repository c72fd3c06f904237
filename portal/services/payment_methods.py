"""Payment methods saved for a client through the gateway (SetupIntents), the client's autopay
switch, and the expiring-card notice.

Rules kept here:
- Every function takes the client's id and works only on that client's methods: another
  client's method (or a removed one) is NotFound.
- Saving goes through a SetupIntent on the client's gateway customer
  (``Client.gateway_customer_id``, created once). A method is stored once per SetupIntent
  (``payment_method.gateway_setup_id`` is unique), so the sandbox's confirmation, Stripe's
  return and a reload of it all end in the same one row. The client's first method is the
  default; removing the default makes the newest remaining method the default.
- Removing detaches the method at the gateway (it can never be charged again), then keeps the
  row with ``removed_at`` so old payments still name it. Removing the last method turns autopay
  off: autopay charges the default method, and there is none left.
- Contacts may turn autopay on or off only when the business lets them
  (``Business.clients_manage_autopay``); staff always may. Turning it on needs a default method.
  A restricted client's contacts may be refused (``restrictions.ensure_allowed``).
- The expiring-card notice is claimed per card with a conditional UPDATE
  (``expiry_notified_at IS NULL``), committed with its emails: two ticks never send it twice.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import PROCESSING, REQUIRES_ACTION, SUCCEEDED, GatewayError
from portal.models import Client, Contact, PaymentMethod
from portal.services import restrictions
from portal.services.errors import NotFound, ServiceError
from portal.services.events import SYSTEM, Actor, commit, queue_email, record_event, rollback
from portal.services.settings import get_business

TYPE_LABELS = {"card": "Card", "us_bank_account": "US bank account", "sepa_debit": "SEPA Direct Debit"}
BRAND_LABELS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "discover": "Discover",
                "diners": "Diners Club", "jcb": "JCB", "unionpay": "UnionPay"}
UNREACHABLE = "We couldn't reach the payment provider. Please try again in a moment."
# Which field of the add form a gateway refusal is about.
_FIELD_FOR_CODE = {
    "incorrect_number": "card_number", "invalid_number": "card_number", "card_declined": "card_number",
    "invalid_expiry_month": "expiry", "invalid_expiry_year": "expiry", "expired_card": "expiry",
    "incorrect_cvc": "cvc", "invalid_cvc": "cvc", "invalid_bank_account": "account",
}
_CVC = re.compile(r"\d{3,4}")


def _actor(contact: Contact | None) -> Actor:
    return Actor.of(contact) if contact is not None else SYSTEM


def _client(client_id: int, lock: bool = False) -> Client:
    query = select(Client).where(Client.id == client_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    client = db.session.scalar(query)
    if client is None:
        rollback()
        raise NotFound("No such client.")
    return client


def _ensure_allowed(client: Client, action: str) -> None:
    """A restricted client's contacts may be refused ``action`` (locks are released first)."""
    try:
        restrictions.ensure_allowed(client, action)
    except ServiceError:
        rollback()
        raise


def _method(client_id: int, method_id: int, lock: bool = False) -> PaymentMethod:
    """One of the client's saved methods that is not removed; anything else is NotFound."""
    query = select(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.client_id == client_id,
                                        PaymentMethod.removed_at.is_(None))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = db.session.scalar(query)
    if row is None:
        rollback()
        raise NotFound("No such payment method.")
    return row


def _active(client_id: int):
    return select(PaymentMethod).where(PaymentMethod.client_id == client_id, PaymentMethod.removed_at.is_(None))


def client_methods(client_id: int) -> list[PaymentMethod]:
    """The client's saved methods, not removed: the default first, then newest first."""
    return list(db.session.scalars(_active(client_id).order_by(
        PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc(), PaymentMethod.id.desc())))


def default_method(client_id: int) -> PaymentMethod | None:
    """What autopay and "Attempt card" charge: the client's default saved method (None: none)."""
    return db.session.scalar(_active(client_id).where(PaymentMethod.is_default.is_(True))
                             .order_by(PaymentMethod.id.desc()).limit(1))


def accepted_types(client: Client) -> list[str]:
    """The method types the business accepts for the client's currency (as on the payment page)."""
    from portal.services.payments import methods_for

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


# The gateway customer and SetupIntents -------------------------------------------------------

def _ours(gateway, customer_id: str | None) -> bool:
    """Whether a stored customer id belongs to the gateway in use (sandbox ids are marked)."""
    if not customer_id:
        return False
    return customer_id.startswith("cus_sbx_") == (gateway.name == "sandbox")


def ensure_customer(client_id: int) -> str:
    """The client's customer at the gateway, created once and kept on the client. Safe to call
    concurrently: the idempotency key comes from the client's id and details, and the row lock
    decides whose id is kept (the same customer when the details were the same)."""
    gateway = get_gateway()
    client = _client(client_id)
    if _ours(gateway, client.gateway_customer_id):
        return client.gateway_customer_id
    email = client.email or next((c.email for c in client.contacts if c.receives_invoices), None)
    digest = hashlib.sha256(f"{gateway.name}|{email}|{client.name}".encode()).hexdigest()[:12]
    try:
        customer_id = gateway.ensure_customer(f"client-{client.id}", email, client.name,
                                              f"client-{client.id}-customer-{digest}")
    except GatewayError as exc:
        raise ServiceError(UNREACHABLE) from exc
    client = _client(client_id, lock=True)
    if _ours(gateway, client.gateway_customer_id):
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
    client = _client(client_id)
    if contact is not None:
        _ensure_allowed(client, "payment_methods")
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
    client = _client(client_id)
    if contact is not None:
        _ensure_allowed(client, "payment_methods")
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
    client = _client(client_id)
    if contact is not None:
        _ensure_allowed(client, "payment_methods")
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
    client = _client(client_id, lock=True)  # one default per client, however many arrive at once
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
    record_event("payment_method.added", "client", client.id, _actor(contact),
                 after={"payment_method_id": row.id, "default": row.is_default},
                 data={"payment_method_id": row.id, "type": row.type, "description": describe(row)})
    commit()
    return row


# Remove, make default --------------------------------------------------------------------------

def remove(client_id: int, method_id: int, actor: Actor) -> dict:
    """Detach the method at the gateway and mark it removed. Returns ``{"method", "new_default",
    "autopay_off"}``: the next newest method becomes the default if this one was; removing the last
    one turns autopay off."""
    client = _client(client_id, lock=True)
    if actor.kind == "contact":
        _ensure_allowed(client, "payment_methods")
    row = _method(client_id, method_id, lock=True)
    gateway = get_gateway()
    if row.gateway == gateway.name:
        try:
            gateway.detach_payment_method(row.gateway_method_id)
        except GatewayError as exc:
            if exc.code != "resource_missing":  # gone at the gateway already: nothing to detach
                rollback()
                raise ServiceError("We couldn't remove it right now. Please try again in a moment.") from exc
    was_default = row.is_default
    row.removed_at = clock.now()
    row.is_default = False
    db.session.flush()
    new_default = None
    if was_default:
        new_default = db.session.scalar(_active(client_id).order_by(PaymentMethod.created_at.desc(),
                                                                    PaymentMethod.id.desc()).limit(1))
        if new_default is not None:
            new_default.is_default = True
    record_event("payment_method.removed", "client", client.id, actor,
                 before={"payment_method_id": row.id, "default": was_default},
                 data={"payment_method_id": row.id, "description": describe(row),
                       "new_default_id": new_default.id if new_default is not None else None})
    autopay_off = False
    if client.autopay and db.session.scalar(select(func.count()).select_from(_active(client_id).subquery())) == 0:
        client.autopay = False
        autopay_off = True
        record_event("autopay.turned_off", "client", client.id, actor, before={"autopay": True},
                     after={"autopay": False}, data={"reason": "no saved payment method left"})
    commit()
    return {"method": row, "new_default": new_default, "autopay_off": autopay_off}


def set_default(client_id: int, method_id: int, actor: Actor) -> PaymentMethod:
    """Make one of the client's methods the default (what autopay charges)."""
    client = _client(client_id, lock=True)
    row = _method(client_id, method_id, lock=True)
    if row.is_default:
        commit()
        return row
    previous = default_method(client_id)
    if previous is not None:
        previous.is_default = False
        db.session.flush()
    row.is_default = True
    record_event("payment_method.default_changed", "client", client.id, actor,
                 before={"payment_method_id": previous.id if previous is not None else None},
                 after={"payment_method_id": row.id}, data={"description": describe(row)})
    commit()
    return row


# Autopay -------------------------------------------------------------------------------------------

def autopay_timing_text(client: Client) -> str:
    """When autopay charges, in words: the client's own rule, else the business default."""
    business = get_business()
    timing = client.autopay_timing or business.autopay_timing
    if timing == "on_due_date":
        return "on the due date"
    if timing == "days_before_due":
        days = (client.autopay_days_before if client.autopay_timing == "days_before_due"
                and client.autopay_days_before else business.autopay_days_before)
        return f"{days} day{'' if days == 1 else 's'} before the due date"
    return "on the day an invoice is issued"


def set_autopay(client_id: int, on: bool, actor: Actor) -> Client:
    """Turn the client's autopay on or off. A contact may only when the business lets clients
    manage autopay (staff always may); turning it on needs a default saved method."""
    business = get_business()
    client = _client(client_id, lock=True)
    if actor.kind == "contact":
        if not business.clients_manage_autopay:
            rollback()
            raise ServiceError(f"Autopay is set by {business.name}. Please contact them to change it.",
                               field="autopay")
        _ensure_allowed(client, "autopay")
    if bool(on) == client.autopay:
        commit()
        return client
    if on and default_method(client_id) is None:
        rollback()
        raise ServiceError("Add a payment method first: autopay charges your default payment method.",
                           field="autopay")
    client.autopay = bool(on)
    method = default_method(client_id)
    record_event("autopay.turned_on" if on else "autopay.turned_off", "client", client.id, actor,
                 before={"autopay": not on}, after={"autopay": bool(on)},
                 data={"payment_method_id": method.id if method is not None else None,
                       "timing": autopay_timing_text(client)})
    commit()
    return client


# Pages -----------------------------------------------------------------------------------------------

def _autopay_view(client: Client) -> dict:
    business = get_business()
    return {"on": client.autopay, "timing": autopay_timing_text(client),
            "clients_manage": business.clients_manage_autopay}


def method_view(method: PaymentMethod) -> dict:
    """How a saved method is shown: ``name`` (card brand or bank name), ``kind`` (Card, SEPA Direct
    Debit...), ``last4``, ``expires`` (MM/YYYY, cards only) and ``default``."""
    if method.type == "card":
        name = BRAND_LABELS.get(method.brand or "", (method.brand or "Card").title())
        expires = f"{method.exp_month:02d}/{method.exp_year}" if method.exp_month and method.exp_year else None
    else:
        name, expires = method.bank_name or TYPE_LABELS.get(method.type, "Bank account"), None
    return {"id": method.id, "method": method, "type": method.type, "name": name,
            "kind": TYPE_LABELS.get(method.type, method.type), "last4": method.last4, "expires": expires,
            "default": method.is_default, "description": describe(method)}


def _views(client_id: int) -> list[dict]:
    return [method_view(m) for m in client_methods(client_id)]


def methods_page(client_id: int) -> dict:
    """Everything the portal's payment methods page shows for the client."""
    client = _client(client_id)
    gateway = get_gateway()
    methods = _views(client_id)
    return {"client": client, "methods": methods, "default": next((m for m in methods if m["default"]), None),
            "autopay": _autopay_view(client), "types": accepted_types(client), "gateway": gateway.name,
            "test_mode": bool(gateway.test_mode),
            # What a restricted client may not do here, and why (the page hides or disables it).
            "blocked": {action: restrictions.refusal(client, action) for action in ("payment_methods", "autopay")}}


def client_panel(client) -> dict | None:
    """What the staff client page shows about saved methods and autopay."""
    methods = _views(client.id)
    return {"methods": methods, "default": next((m for m in methods if m["default"]), None),
            "autopay": _autopay_view(client)}


def portal_summary(client_id: int) -> dict | None:
    """What the portal's Billing tab shows: the default method, how many are saved, autopay."""
    client = _client(client_id)
    methods = _views(client_id)
    return {"default": next((m for m in methods if m["default"]), None), "count": len(methods),
            "autopay": _autopay_view(client)}


# Expiring cards (the tick) ------------------------------------------------------------------------

def notify_expiring(at: datetime) -> int:
    """The tick's step: the ``payment_method_expiring`` email to the client's billing contacts,
    once per saved card that expires (at the end of its expiry month, in the business's timezone)
    within ``Business.card_expiry_notice_days`` of ``at``. Each card is claimed with a
    conditional UPDATE committed together with its emails, so concurrent or repeated ticks
    never send twice. Returns how many cards were notified."""
    from portal.services import email_templates
    from portal.services.links import external_url

    business = get_business()
    horizon = (clock.as_utc(at) + timedelta(days=business.card_expiry_notice_days)).astimezone(
        ZoneInfo(business.timezone))
    # A card good through month M expires when month M+1 begins; that is before the horizon
    # exactly when M is before the horizon's month.
    month_index = horizon.year * 12 + horizon.month
    due = list(db.session.scalars(
        select(PaymentMethod.id).where(
            PaymentMethod.type == "card", PaymentMethod.removed_at.is_(None),
            PaymentMethod.expiry_notified_at.is_(None), PaymentMethod.exp_year.is_not(None),
            PaymentMethod.exp_month.is_not(None),
            PaymentMethod.exp_year * 12 + PaymentMethod.exp_month < month_index,
        ).order_by(PaymentMethod.id)))
    db.session.commit()
    sent = 0
    for method_id in due:
        claimed = db.session.execute(
            update(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.expiry_notified_at.is_(None),
                                        PaymentMethod.removed_at.is_(None))
            .values(expiry_notified_at=clock.as_utc(at)).execution_options(synchronize_session=False))
        if claimed.rowcount != 1:
            rollback()
            continue
        method = db.session.get(PaymentMethod, method_id, populate_existing=True)
        client = db.session.get(Client, method.client_id)
        link = external_url("client.payment_methods")
        extra = f"\n\n{describe(method)}."
        if client.autopay and method.is_default:
            extra += " Autopay charges this card: add a new one before it expires so your payments keep going through."
        for contact in [c for c in client.contacts if c.receives_invoices]:
            variables = {"customer_name": contact.name, "company_name": business.name, "invoice_number": "",
                         "amount_due": "", "due_date": "", "invoice_url": link, "pay_now_url": link}
            subject, body = email_templates.render("payment_method_expiring", variables)
            queue_email(contact.email, "templated",
                        {"business": business, "subject": subject, "body": body + extra, "link": link,
                         "label": "Update your payment methods"},
                        subject_type="client", subject_id=client.id)
        record_event("payment_method.expiry_notified", "client", client.id, SYSTEM,
                     data={"payment_method_id": method.id, "description": describe(method)})
        commit()
        sent += 1
    return sent
