"""Clients and their contacts.

Every value is checked here, whoever calls (the staff pages, the demo, tests): a bad one raises
``ClientInvalid`` (field → message) and nothing is written.
"""
from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from portal.billing.money import valid_currency
from portal.extensions import db
from portal.models import Client, Contact
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event

CLIENT_FIELDS = ("name", "kind", "email", "phone", "address", "tax_id", "currency", "notes")
CONTACT_FIELDS = ("name", "email", "phone", "receives_invoices")
KINDS = ("company", "person")
# The longest text each field takes (the forms render them as ``maxlength``).
CLIENT_LIMITS = {"name": 200, "email": 254, "phone": 50, "address": 1000, "tax_id": 50, "notes": 5000}
CONTACT_LIMITS = {"name": 200, "email": 254, "phone": 50}
_CURRENCY = re.compile(r"[A-Za-z]{3}")


class ClientInvalid(ServiceError):
    """Bad input: ``errors`` maps a field to its message (a new client's contacts are
    ``contacts-N-name`` / ``contacts-N-email``)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


def _snapshot(obj, fields) -> dict:
    return {f: getattr(obj, f) for f in fields}


def list_clients(search: str = "", page: int = 1, per_page: int = 25, include_archived: bool = False):
    query = select(Client).options(selectinload(Client.contacts)).order_by(func.lower(Client.name), Client.id)
    if not include_archived:
        query = query.where(Client.archived_at.is_(None))
    term = search.strip().lower()
    if term:
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        matching_contacts = select(Contact.client_id).where(
            or_(func.lower(Contact.email).like(like, escape="\\"), func.lower(Contact.name).like(like, escape="\\"))
        )
        query = query.where(
            or_(
                func.lower(Client.name).like(like, escape="\\"),
                func.lower(Client.email).like(like, escape="\\"),
                Client.id.in_(matching_contacts),
            )
        )
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


def get_client(client_id: int) -> Client:
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


def get_contact(client_id: int, contact_id: int) -> Contact:
    """A contact, only through its own client (a foreign id is not found)."""
    contact = db.session.get(Contact, contact_id)
    if contact is None or contact.client_id != client_id:
        raise NotFound("No such contact.")
    return contact


def _clean(values: dict, fields) -> dict:
    out = {}
    for key in fields:
        if key in values:
            value = values[key]
            out[key] = value.strip() if isinstance(value, str) else value
            if out[key] == "" and key not in ("name",):
                out[key] = None
    if out.get("email"):
        out["email"] = out["email"].lower()
    if isinstance(out.get("currency"), str):
        out["currency"] = out["currency"].upper()
    return out


def _too_long(limit: int) -> str:
    return f"Field cannot be longer than {limit} characters."


def _email_error(email: str, limit: int) -> str | None:
    """Why ``email`` is not an address we can send to, or None (the length first: nothing long is parsed)."""
    if len(email) > limit:
        return _too_long(limit)
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return "Invalid email address."
    return None


def _text_errors(cleaned: dict, limits: dict[str, int], errors: dict, prefix: str = "") -> None:
    for key, limit in limits.items():
        value = cleaned.get(key)
        if value is not None and not isinstance(value, str):
            errors.setdefault(prefix + key, "Enter text.")
        elif value is not None and len(value) > limit:
            errors.setdefault(prefix + key, _too_long(limit))


def _client_errors(cleaned: dict) -> dict[str, str]:
    """Field → message for a client's values (only the fields given are checked)."""
    errors: dict[str, str] = {}
    if "name" in cleaned and not cleaned["name"]:
        errors["name"] = "Enter the client's name."
    if "kind" in cleaned and cleaned["kind"] not in KINDS:
        errors["kind"] = "Choose company or person."
    _text_errors(cleaned, CLIENT_LIMITS, errors)
    if "email" not in errors and cleaned.get("email"):
        if message := _email_error(cleaned["email"], CLIENT_LIMITS["email"]):
            errors["email"] = message
    currency = cleaned.get("currency")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.fullmatch(currency)
                                     and valid_currency(currency)):
        errors["currency"] = "Use a three-letter code, like EUR."
    return errors


def _contact_errors(cleaned: dict, prefix: str = "", new_client: bool = False) -> dict[str, str]:
    """Field → message for a contact's values. A new client's contact is asked for in the new
    client's words ("a contact's name")."""
    errors: dict[str, str] = {}
    if "name" in cleaned and not cleaned["name"]:
        errors[prefix + "name"] = "Enter a contact's name." if new_client else "Enter the contact's name."
    _text_errors(cleaned, CONTACT_LIMITS, errors, prefix)
    if prefix + "email" not in errors:
        if not cleaned.get("email"):
            errors[prefix + "email"] = "Enter the contact's email." if new_client else "Enter an email address."
        elif message := _email_error(cleaned["email"], CONTACT_LIMITS["email"]):
            errors[prefix + "email"] = message
    if "receives_invoices" in cleaned and not isinstance(cleaned["receives_invoices"], bool):
        errors[prefix + "receives_invoices"] = "Choose yes or no."
    return errors


def _refuse(errors: dict[str, str]) -> None:
    if errors:
        raise ClientInvalid(errors)


def create_client(values: dict, contacts: list[dict], actor: Actor) -> Client:
    """A new client with its contacts. ``ClientInvalid`` (nothing written) if any value is bad; a
    contact's errors are keyed ``contacts-N-<field>``."""
    cleaned = {"name": "", **_clean(values, CLIENT_FIELDS)}
    cleaned_contacts = [{"name": "", **_clean(contact_values, CONTACT_FIELDS)} for contact_values in contacts]
    errors = _client_errors(cleaned)
    for i, contact_values in enumerate(cleaned_contacts):
        errors.update(_contact_errors(contact_values, prefix=f"contacts-{i}-", new_client=True))
    _refuse(errors)
    client = Client(**cleaned)
    for contact_values in cleaned_contacts:
        client.contacts.append(Contact(**contact_values))
    db.session.add(client)
    db.session.flush()
    record_event("client.created", "client", client.id, actor, after=_snapshot(client, CLIENT_FIELDS))
    for contact in client.contacts:
        record_event("contact.created", "contact", contact.id, actor,
                     after=_snapshot(contact, CONTACT_FIELDS), data={"client_id": client.id})
    commit()
    return client


def update_client(client: Client, values: dict, actor: Actor) -> Client:
    """Change the client's fields given in ``values``; ``ClientInvalid`` (nothing changed) if any is bad."""
    cleaned = _clean(values, CLIENT_FIELDS)
    _refuse(_client_errors(cleaned))
    before = _snapshot(client, CLIENT_FIELDS)
    for key, value in cleaned.items():
        setattr(client, key, value)
    after = _snapshot(client, CLIENT_FIELDS)
    changed = [k for k in CLIENT_FIELDS if before[k] != after[k]]
    if changed:
        record_event("client.updated", "client", client.id, actor,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    commit()
    return client


def add_contact(client: Client, values: dict, actor: Actor) -> Contact:
    """A new contact of ``client``; ``ClientInvalid`` (nothing written) if a value is bad."""
    cleaned = {"name": "", **_clean(values, CONTACT_FIELDS)}
    _refuse(_contact_errors(cleaned))
    contact = Contact(client_id=client.id, **cleaned)
    db.session.add(contact)
    db.session.flush()
    record_event("contact.created", "contact", contact.id, actor,
                 after=_snapshot(contact, CONTACT_FIELDS), data={"client_id": client.id})
    commit()
    return contact


def update_contact(contact: Contact, values: dict, actor: Actor) -> Contact:
    """Change the contact's fields given in ``values``; ``ClientInvalid`` (nothing changed) if a value
    is bad, or if the contact signs in to the portal and another portal user has the new email."""
    before = _snapshot(contact, CONTACT_FIELDS)
    cleaned = _clean(values, CONTACT_FIELDS)
    errors = _contact_errors({"email": contact.email, **cleaned})
    if not errors and contact.portal_access and cleaned.get("email") and cleaned["email"] != contact.email:
        from portal.services.auth import find_portal_contact

        other = find_portal_contact(cleaned["email"])
        if other is not None and other.id != contact.id:
            errors["email"] = "Another contact already signs in to the portal with this email."
    _refuse(errors)
    for key, value in cleaned.items():
        setattr(contact, key, value)
    after = _snapshot(contact, CONTACT_FIELDS)
    changed = [k for k in CONTACT_FIELDS if before[k] != after[k]]
    if changed:
        record_event("contact.updated", "contact", contact.id, actor,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed},
                     data={"client_id": contact.client_id})
    commit()
    return contact


def remove_contact(contact: Contact, actor: Actor) -> None:
    client = contact.client
    if len(client.contacts) <= 1:
        raise ServiceError("A client needs at least one contact.")
    record_event("contact.removed", "contact", contact.id, actor,
                 before=_snapshot(contact, CONTACT_FIELDS), data={"client_id": client.id})
    from portal.services.sessions import end_all

    end_all(contact, "removed")  # a reused id must not inherit a live session
    db.session.delete(contact)
    commit()


def client_timeline(client: Client, limit: int = 50):
    from portal.models import Event

    contact_ids = [c.id for c in client.contacts]
    # Contacts since removed still belong in the history: every contact the
    # services created for this client has a contact.created event naming it.
    ever_created = select(Event.subject_id).where(
        Event.type == "contact.created", Event.data["client_id"].as_integer() == client.id
    )
    query = select(Event).where(
        or_(
            (Event.subject_type == "client") & (Event.subject_id == client.id),
            (Event.subject_type == "contact") & (Event.subject_id.in_(contact_ids)) if contact_ids else False,
            (Event.subject_type == "contact") & (Event.subject_id.in_(ever_created)),
        )
    ).order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)
    return db.session.scalars(query).all()


# Billing on the client page (F2) -------------------------------------------------------

CLIENT_PAGE_INVOICES = 25


def client_balance(client: Client) -> dict[str, int]:
    """What the client owes: the amount due on its sent and overdue invoices, per currency (minor units)."""
    from portal.billing import states
    from portal.models import Invoice

    rows = db.session.execute(
        select(Invoice.currency, func.coalesce(func.sum(Invoice.amount_due), 0))
        .where(Invoice.client_id == client.id, Invoice.status.in_((states.OPEN, states.OVERDUE)))
        .group_by(Invoice.currency).order_by(Invoice.currency)
    ).all()
    return {currency: int(due) for currency, due in rows if int(due) != 0}


def client_invoices(client: Client, limit: int = CLIENT_PAGE_INVOICES) -> tuple[list, int]:
    """The client's most recent invoices (drafts included, for staff) and how many it has in all."""
    from portal.models import Invoice

    invoices = db.session.scalars(
        select(Invoice).where(Invoice.client_id == client.id)
        .order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(limit)
    ).all()
    total = db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.client_id == client.id))
    return list(invoices), int(total or 0)


def client_billing(client: Client) -> dict:
    """Everything the client page shows about billing: invoices, open charges and the balance."""
    from portal.services.charges import open_charges_summary

    invoices, invoice_count = client_invoices(client)
    return {
        "invoices": invoices,
        "invoice_count": invoice_count,
        "charges": open_charges_summary(client),
        "balance": client_balance(client),
    }
