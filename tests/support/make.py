"""Builders for what tests need, made through the same services the app uses (so every invariant
the services keep holds: numbering, totals, events, credit and autopay at finalize, payment
allocation).

    from tests.support import make

    acme = make.client()
    vat = make.tax_rate()                                  # VAT 23 %, exclusive
    draft = make.invoice(acme, status="draft")             # one €100.00 line, "Work"
    open_ = make.invoice(acme, "250.00", due_in_days=-11)  # finalized, 11 days overdue
    paid = make.paid_invoice(acme, lines=[("Design", 12000, vat)])
    link = make.guest_link(open_)                          # "/pay/<raw token>"

The ``make`` fixture (tests/conftest.py) hands out this same module once the app and its database
are up, so a test may take either; every builder needs the app context the ``app`` fixture pushes.
Amounts are written as a person types them ("100.00") or given in minor units (an ``int``).
"""
from __future__ import annotations

from datetime import date, timedelta

from portal import clock
from portal.services.events import SYSTEM, Actor

STAFF = Actor("staff", None, "staff@portal.example")
CARD = "card:4242424242424242"

DEFAULT_CONTACT = {"name": "Ana Ribeiro", "email": "ana@acme.example", "receives_invoices": True}


# The business and its people -----------------------------------------------------------------

def business(**values):
    """The business row, with ``values`` set on it (e.g. name, currency, restrict_overdue_days)."""
    from portal.extensions import db
    from portal.services.settings import get_business

    row = get_business()
    for key, value in values.items():
        setattr(row, key, value)
    db.session.commit()
    return row


def staff(email="staff@portal.example", password="correct horse battery", role="staff", name="Sam Staff"):
    """A staff user (``plain_password`` holds the password, for signing in)."""
    from portal.services.auth import create_staff

    user = create_staff(email, password, role=role, name=name)
    user.plain_password = password
    return user


def owner(email="owner@portal.example", password="correct horse battery", name="Olivia Owner"):
    return staff(email=email, password=password, role="owner", name=name)


def client(name="Acme Ltd", contacts=None, **values):
    """A company client with one contact, Ana (or ``contacts``); ``values`` are more client fields."""
    from portal.services.clients import create_client

    contacts = contacts or [dict(DEFAULT_CONTACT)]
    return create_client({"name": name, "kind": "company", **values}, contacts, SYSTEM)


def contact(client, name="Ben Okafor", email="ben@acme.example", password=None, receives_invoices=True):
    """Another contact of ``client``; with a ``password`` it may sign in to the portal
    (``plain_password`` holds it)."""
    from portal.extensions import db
    from portal.services.clients import add_contact
    from portal.services.passwords import hash_password

    row = add_contact(client, {"name": name, "email": email, "receives_invoices": receives_invoices}, SYSTEM)
    if password is not None:
        row.portal_access = True
        row.password_hash = hash_password(password)
        db.session.commit()
        row.plain_password = password
    return row


_new_client = client  # for builders whose ``client`` parameter hides it


def contact_with_login(email="ana@acme.example", password="client password 1", client_name="Acme Ltd"):
    """A new client whose one contact may sign in to the portal (``plain_password`` holds the password)."""
    from portal.extensions import db
    from portal.services.passwords import hash_password

    row = client(name=client_name, contacts=[{"name": "Ana Ribeiro", "email": email, "receives_invoices": True}])
    person = row.contacts[0]
    person.portal_access = True
    person.password_hash = hash_password(password)
    db.session.commit()
    person.plain_password = password
    return person


# The catalogue ------------------------------------------------------------------------------

def tax_rate(name="VAT", percent="23", inclusive=False, active=True):
    """A tax rate through the catalogue service (VAT 23 %, added on top of prices, by default)."""
    from portal.services.catalogue import create_tax_rate

    return create_tax_rate({"name": name, "percent": str(percent),
                            "inclusive": "inclusive" if inclusive else "exclusive", "active": active}, STAFF)


def service(name="Brand workshop", unit_price="450.00", currency="EUR", tax_rate=None, description="",
            active=True):
    """A catalogue service; ``tax_rate`` a TaxRate or its id."""
    from portal.services.catalogue import create_service

    return create_service({"name": name, "description": description, "unit_price": _typed(unit_price, currency),
                           "currency": currency, "tax_rate_id": _rate_id(tax_rate), "active": active}, STAFF)


# Invoices ----------------------------------------------------------------------------------------

def _typed(amount, currency: str) -> str:
    """An amount as the form takes it: text as given, minor units (int) written in major units."""
    if isinstance(amount, int):
        from portal.billing.money import to_major

        return format(to_major(amount, currency), "f")
    return str(amount)


def _rate_id(rate) -> str:
    if rate is None or rate == "":
        return ""
    return str(rate if isinstance(rate, (int, str)) else rate.id)


def _line(line, currency: str, tax_rate) -> dict:
    """A draft line as the editor posts it, from a dict (taken as is) or a tuple:
    (description, unit price), (description, unit price, tax rate) or (description, quantity, unit price, tax rate)."""
    if isinstance(line, dict):
        out = dict(line)
        if tax_rate is not None and "tax_rate_id" not in out:
            out["tax_rate_id"] = _rate_id(tax_rate)
        return out
    description, *rest = line
    quantity, rate = "1", tax_rate
    if len(rest) == 1:
        (price,) = rest
    elif len(rest) == 2:
        price, rate = rest
    elif len(rest) == 3:
        quantity, price, rate = rest
    else:
        raise TypeError("a line is (description, price[, tax rate]) or (description, quantity, price, tax rate): "
                        f"{line!r}")
    return {"description": description, "quantity": str(quantity), "unit_price": _typed(price, currency),
            "tax_rate_id": _rate_id(rate)}


def _due(due, due_in_days) -> str:
    if due is not None:
        return due.isoformat() if isinstance(due, date) else str(due)
    if due_in_days is not None:
        return (clock.today() + timedelta(days=due_in_days)).isoformat()
    return ""


def invoice(client=None, amount="100.00", *, lines=None, currency="EUR", tax_rate=None, description="Work",
            quantity="1", due=None, due_in_days=None, memo="", footer="", discount=None, status="open",
            actor=STAFF):
    """An invoice for ``client`` (a new default client when None) through the invoice service.

    One line ``description`` × ``quantity`` at ``amount`` unless ``lines`` are given (see ``_line``);
    ``tax_rate`` (a TaxRate or id) goes on every line that names none. ``due`` a date or ISO text,
    or ``due_in_days`` from today (UTC); none: the business's payment terms at finalize.
    ``discount`` ("percent"|"fixed", "10") discounts the whole invoice.

    ``status``: "draft" (saved, not finalized), "open" (finalized: numbered, credit applied,
    autopay scheduled), "paid" (finalized, then paid in full by a manual payment), "void"
    (finalized, then voided), "uncollectible" (finalized, then written off)."""
    from portal.billing import states
    from portal.extensions import db
    from portal.services import invoices

    if client is None:
        client = _new_client()
    if lines is None:
        lines = [{"description": description, "quantity": str(quantity), "unit_price": _typed(amount, currency)}]
    kind, value = discount or ("", "")
    draft = invoices.create_draft(client, actor)
    invoices.save_draft(draft, invoices.DraftInput(
        currency=currency, due_date=_due(due, due_in_days), memo=memo, footer=footer,
        discount_kind=kind, discount_value=str(value),
        lines=[_line(line, currency, tax_rate) for line in lines]), actor)
    if status == "draft":
        return draft
    if status not in ("open", "paid", "void", "uncollectible"):
        raise ValueError(f"make.invoice cannot make a {status!r} invoice")
    finalized = invoices.finalize(draft, actor)
    if status == "paid":
        payment(finalized, actor=actor)
    elif status == "void":
        invoices.void(finalized, actor, "mistake")
    elif status == "uncollectible":  # written off: no service does it yet, so the state machine's step
        finalized.status = states.transition(finalized.status, "mark_uncollectible")
        db.session.commit()
    return finalized


def paid_invoice(client=None, amount="100.00", *, method="wire", **kwargs):
    """An invoice finalized and then paid in full by a manual payment recorded through the service."""
    row = invoice(client, amount, **kwargs)
    payment(row, method=method, actor=kwargs.get("actor", STAFF))
    return row


def payment(invoice_row, amount=None, method="wire", reference="", actor=STAFF):
    """A manual payment on a finalized invoice (the whole amount due unless ``amount``), as staff
    record it; returns the Payment."""
    from portal.services import invoices

    text = _typed(invoice_row.amount_due if amount is None else amount, invoice_row.currency)
    return invoices.record_manual_payment(invoice_row, text, method, "", reference, actor)


def card_payment(invoice_row, card=CARD):
    """The invoice paid by card through the sandbox gateway (a portal or guest payment); returns the Payment."""
    from portal.services import payments

    return payments.confirm_in_sandbox(payments.start_payment(invoice_row.id), card)


def guest_link(invoice_row) -> str:
    """A new guest payment link for a finalized invoice: "/pay/<raw token>"."""
    from portal.extensions import db
    from portal.services import invoices

    raw = invoices.issue_guest_token(invoice_row)
    db.session.commit()
    return f"/pay/{raw}"



# Recurring billing ----------------------------------------------------------------------------------

def plan(name="Studio membership", unit_price="100.00", currency="EUR", unit="month", interval=1, tax_rate=None,
         setup_fee="", trial_days=0, self_serve=False, **values):
    """A plan (through ``subscriptions.create_plan``)."""
    from portal.services.subscriptions import create_plan

    typed = {"name": name, "unit_price": _typed(unit_price, currency), "currency": currency, "unit": unit,
             "interval": str(interval), "tax_rate_id": _rate_id(tax_rate),
             "setup_fee": _typed(setup_fee, currency) if setup_fee != "" else "", "trial_days": str(trial_days),
             "self_serve": "y" if self_serve else "", **values}
    return create_plan(typed, STAFF)


def subscription(client_row, plans=None, *, start=None, quantity="1", first_invoice="auto", backlog="bill",
                 **values):
    """A subscription of ``client_row`` to ``plans`` (a plan, or a list of (plan, quantity)), starting
    ``start`` (a date; default today in the business's timezone)."""
    from portal.services.subscriptions import create_subscription

    if plans is None:
        plans = plan(currency=client_row.currency or "EUR")
    pairs = plans if isinstance(plans, list) else [(plans, quantity)]
    typed = {"items": [{"plan_id": str(p.id), "quantity": str(q)} for p, q in pairs],
             "start_date": start.isoformat() if start else "", "first_invoice": first_invoice, "backlog": backlog,
             **{k: str(v) if v is not None else "" for k, v in values.items()}}
    return create_subscription(client_row, typed, STAFF)
