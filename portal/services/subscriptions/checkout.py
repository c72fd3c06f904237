"""Self-checkout (R1, seed 004): a client's contact subscribes to a self-serve plan in the portal, pays
the first invoice through the usual payment form, and that card is saved for the next cycles.

``start_self_checkout`` refuses, writing nothing: a client restricted from starting subscriptions
(``restrictions``, "new_subscriptions"), an archived client, a plan that is not active and self-serve,
a plan in another currency than the client's, a quantity that is not a whole number from 1 to
``MAX_QUANTITY``. Then, under the client's row lock, a checkout of the same plan that is still waiting
(its first invoice open, or not made yet) is given back instead of a second one: a double click or a
reload makes one subscription and one invoice. Otherwise:

1. the subscription is created (``manage.create_subscription``, ``self_checkout``) with autopay off
   while its first period is billed, so the first invoice is never charged to a card already on file
   behind the payer's back: the payer pays it on the payment form;
2. period 0 is billed at once (``billing.bill_subscription``; a draft left for review is finalized:
   the payer is waiting for it);
3. the subscription's own autopay is turned on (the client's setting stays as it is) and it waits,
   ``incomplete``, held on that invoice (``held_invoice_id``). Paying it through the payment form
   saves the card as the client's default (``payments.saves_method``), and the subscription becomes
   active: at once when the payer comes back (``activate_if_paid``), else at the next billing run
   (``billing.release_hold``). The next cycles are charged off-session by autopay. If staff void (or
   write off) that invoice unpaid instead, the subscription is cancelled, never started.

A plan with a trial has nothing to pay now: the subscription starts ``trialing`` at once with its
autopay on. Its first invoice, after the trial, is charged to the client's default method if there is
one; otherwise it is paid by link, and that payment saves the card for the cycles after it.

Clients may also cancel at period end (when the business allows it) and drop a checkout they did not
pay (its invoice is voided). Every lookup is scoped to the contact's client: another client's
subscription is NotFound.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Client, Contact, Invoice, Plan, Subscription, SubscriptionItem
from portal.services import invoices, locks, payments, restrictions
from portal.services.business import get_business
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.subscriptions import billing, manage
from portal.services.typed import row_id, whole_number

MAX_QUANTITY = int(manage.MAX_QUANTITY)
# What a client may cancel at period end (an incomplete checkout is dropped instead).
CANCELLABLE = ("trialing", "active", "past_due", "paused")
STILL_WAITING = ("incomplete", "trialing", "active")


class CheckoutInvalid(ServiceError):
    """Bad input: ``errors`` maps a field (``quantity``) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(next(iter(errors.values())))
        self.errors = errors


# Who may subscribe to what ------------------------------------------------------------------------

def self_serve_plan(plan_id) -> Plan:
    """An active self-serve plan (anything else: NotFound)."""
    plan = db.session.get(Plan, row_id(plan_id) or 0)
    if plan is None or not plan.active or not plan.self_serve:
        raise NotFound("No such plan.")
    return plan


def refusal(client: Client, plan: Plan) -> str | None:
    """Why this client can't subscribe to this plan in the portal (None: it can)."""
    if client.archived_at is not None:
        return "Your account is closed. Please contact us to start a subscription."
    blocked = restrictions.refusal(client, "new_subscriptions")
    if blocked:
        return blocked
    currency = manage.client_currency(client)
    if plan.currency != currency:
        return f"This plan is billed in {plan.currency}; your account is billed in {currency}. Please contact us."
    return None


def parse_quantity(text) -> int:
    """A whole number of units, 1 to ``MAX_QUANTITY`` (blank: 1)."""
    raw = str(text if text is not None else "").strip()
    quantity = whole_number(raw) if raw else 1
    if quantity is None or not 1 <= quantity <= MAX_QUANTITY:
        raise CheckoutInvalid({"quantity": f"Use a whole number from 1 to {MAX_QUANTITY:,}."})
    return quantity


# Starting ----------------------------------------------------------------------------------------

def first_invoice(sub: Subscription) -> Invoice | None:
    """The subscription's first invoice (None before it is made)."""
    return db.session.scalar(select(Invoice).where(Invoice.subscription_id == sub.id)
                             .order_by(Invoice.id).limit(1))


def waiting_invoice(sub: Subscription) -> Invoice | None:
    """The invoice a checkout waits for: the held first invoice of an incomplete subscription, while
    something is still due on it."""
    if sub.status != "incomplete" or not sub.held_invoice_id:
        return None
    invoice = db.session.get(Invoice, sub.held_invoice_id)
    if invoice is None or invoice.status not in states.PAYABLE or invoice.amount_due <= 0:
        return None
    return invoice


def _unpaid_or_missing(invoice: Invoice | None) -> bool:
    return invoice is None or (invoice.status in states.PAYABLE and invoice.amount_due > 0)


def pending_checkout(client_id: int, plan_id: int) -> Subscription | None:
    """The client's self-checkout of this plan that is not paid for yet: waiting for its first
    payment, still being set up by another request, or in its trial. (Caller holds the client's lock.)"""
    candidates = db.session.scalars(
        select(Subscription).join(SubscriptionItem, SubscriptionItem.subscription_id == Subscription.id)
        .where(Subscription.client_id == client_id, Subscription.self_checkout.is_(True),
               Subscription.status.in_(STILL_WAITING), SubscriptionItem.plan_id == plan_id)
        .order_by(Subscription.id.desc()).limit(20)).all()
    for sub in candidates:
        if _unpaid_or_missing(first_invoice(sub)):
            return sub
    return None


def start_self_checkout(contact: Contact, plan_id, quantity_text) -> Subscription:
    """Subscribe the contact's client to a self-serve plan (see the module's docstring). Returns the
    subscription: ``incomplete`` (pay ``waiting_invoice``), ``trialing``, or ``active`` when credit
    paid the first invoice."""
    plan = self_serve_plan(plan_id)
    client = db.session.get(Client, contact.client_id)
    if client is None:
        raise NotFound("No such client.")
    reason = refusal(client, plan)
    if reason:
        raise ServiceError(reason)
    quantity = parse_quantity(quantity_text)
    actor = Actor.of(contact)
    client = locks.client(client.id)  # one checkout at a time per client: the second finds the first
    reason = refusal(client, plan)  # as the row is now (a restriction set meanwhile)
    if reason:
        rollback()
        raise ServiceError(reason)
    pending = pending_checkout(client.id, plan.id)
    if pending is not None:
        commit()
        return pending
    values = {"items": [{"plan_id": str(plan.id), "quantity": str(quantity)}], "first_invoice": "auto",
              "autopay": "off"}
    sub = manage.create_subscription(client, values, actor, self_checkout=True)  # commits: the lock ends
    subscription_id = sub.id
    if sub.status == "trialing":
        return _waiting(subscription_id, None, actor)
    billing.bill_subscription(subscription_id)
    db.session.expire_all()
    invoice = first_invoice(db.session.get(Subscription, subscription_id))
    if invoice is None:  # billing failed (recorded on the subscription): nothing is left behind
        manage.cancel(subscription_id, "now", actor)
        raise ServiceError("We couldn't start your subscription. Nothing was charged. Please try again in a moment.")
    if invoice.status == states.DRAFT:  # the business reviews recurring invoices; the payer is here now
        if invoice.client.billing_contacts:
            invoices.send(invoice, actor)
        else:
            invoices.finalize(invoice, actor)
    return _waiting(subscription_id, invoice.id, actor)


def _waiting(subscription_id: int, invoice_id: int | None, actor: Actor) -> Subscription:
    """Turn the subscription's own autopay on and, while its first invoice is unpaid, hold it
    ``incomplete`` on that invoice."""
    sub = locks.subscription(subscription_id)
    invoice = db.session.get(Invoice, invoice_id) if invoice_id else None
    before = {"status": sub.status, "autopay": sub.autopay}
    sub.autopay = True
    if invoice is not None and invoice.status in states.PAYABLE and invoice.amount_due > 0 \
            and sub.status in ("active", "trialing"):
        sub.status = "incomplete"
        sub.held_invoice_id = invoice.id
    record_event("subscription.self_checkout", "subscription", sub.id, actor,
                 before=before, after={"status": sub.status, "autopay": True},
                 data={"invoice_id": invoice.id if invoice else None,
                       "number": invoice.number if invoice else None,
                       "amount_due": invoice.amount_due if invoice else 0,
                       "currency": sub.currency})
    commit()
    return sub


# Paying the first invoice ------------------------------------------------------------------------

def own_subscription(contact: Contact, subscription_id) -> Subscription:
    """One of the contact's client's subscriptions (another client's: NotFound)."""
    return manage.get_subscription(subscription_id, contact.client_id)


def activate_if_paid(subscription_id: int) -> bool:
    """An incomplete checkout whose first invoice is settled becomes active now (the billing run
    would do the same at its next tick). Returns whether the subscription is active."""
    sub = locks.subscription(subscription_id)
    if sub.status != "incomplete":
        active = sub.status == "active"
        rollback()
        return active
    if not billing.release_hold(sub):
        if sub.status == "cancelled":  # its first invoice was voided or written off unpaid
            commit()
        else:
            rollback()
        return False
    commit()
    return True


def pay_first_invoice(contact: Contact, subscription_id, method: str, number: str, expiry: str = "") -> dict | None:
    """The checkout's "Pay": the sandbox confirms here and now and the subscription is activated
    (None); Stripe answers the Payment Element's bootstrap (``{client_secret, payment_id}``)."""
    sub = own_subscription(contact, subscription_id)
    invoice = waiting_invoice(sub)
    if invoice is None:
        raise ServiceError("Nothing is due on this subscription's first invoice.")
    if payments.checkout_options(invoice)["gateway"] != "sandbox":
        return payments.stripe_checkout(invoice.id)
    payments.pay_in_sandbox(invoice.id, method, number, expiry)
    activate_if_paid(sub.id)
    return None


def checkout_outcome(contact: Contact, subscription_id, intent_id: str | None = None) -> str:
    """Where the payer lands after paying (the sandbox's redirect, Stripe's return): bring the payment
    up to date (``payments.payment_outcome``), activate the subscription if it is paid. Returns the
    payment's state: paid, processing, failed or pending."""
    sub = own_subscription(contact, subscription_id)
    invoice_id = sub.held_invoice_id or getattr(first_invoice(sub), "id", None)
    if invoice_id is None:
        raise NotFound("No invoice for this subscription yet.")
    state = payments.payment_outcome(invoice_id, intent_id)["state"]
    if state == "paid":
        activate_if_paid(sub.id)
    return state


# The client's own changes --------------------------------------------------------------------------

def cancel_at_period_end(contact: Contact, subscription_id) -> Subscription:
    """The client cancels at the end of the period already billed, when the business allows it."""
    sub = own_subscription(contact, subscription_id)
    if not get_business().clients_cancel_subscriptions:
        raise ServiceError("Please contact us to cancel this subscription.")
    if sub.status == "incomplete" and activate_if_paid(sub.id):  # paid elsewhere: it has started
        sub = own_subscription(contact, subscription_id)
    if sub.status not in CANCELLABLE:
        raise ServiceError("This subscription can't be cancelled." if sub.status != "incomplete"
                           else "This subscription hasn't started: drop the checkout instead.")
    if sub.cancel_at_period_end:
        raise ServiceError("This subscription is already set to end.")
    return manage.cancel(sub.id, "period_end", Actor.of(contact))


def drop_checkout(contact: Contact, subscription_id) -> Subscription:
    """The payer gives up a checkout before paying: its unpaid first invoice is voided and the
    subscription cancelled, in one transaction (the subscription's lock first, then the invoice's).
    Refused once money is on its way."""
    sub = own_subscription(contact, subscription_id)
    actor = Actor.of(contact)
    sub = locks.subscription(sub.id)
    invoice = waiting_invoice(sub) if sub.self_checkout else None
    if invoice is None:
        rollback()
        raise ServiceError("Only a checkout still waiting for its first payment can be dropped.")
    locked = locks.invoice(invoice.id)
    if payments.money_on_its_way(locked) or locked.amount_paid or locked.credit_applied \
            or locked.status not in states.PAYABLE:
        rollback()
        raise ServiceError("A payment for this invoice is on its way or made: the checkout can't be dropped now.")
    invoices.void_locked(locked, actor, "Self-checkout dropped before the first payment.")
    return manage.cancel(sub.id, "now", actor)  # the void and the cancellation commit together


# Checkouts left unpaid ------------------------------------------------------------------------------

CHECKOUT_EXPIRES = timedelta(days=2)
EXPIRER = Actor("system", None, "checkout expiry")


def expire_checkouts(at: datetime) -> int:
    """The tick's sweep: a self-checkout whose first invoice is still unpaid ``CHECKOUT_EXPIRES``
    after it started is dropped (invoice voided, subscription cancelled), as Stripe expires an
    incomplete subscription: an abandoned checkout neither goes overdue nor restricts the client.
    One with money on its way waits. Returns how many were dropped."""
    ids = db.session.scalars(select(Subscription.id).where(
        Subscription.status == "incomplete", Subscription.self_checkout.is_(True),
        Subscription.created_at < clock.as_utc(at) - CHECKOUT_EXPIRES).order_by(Subscription.id).limit(500)).all()
    rollback()
    return sum(expire_checkout(subscription_id) for subscription_id in ids)


def expire_checkout(subscription_id: int) -> bool:
    """Drop one unpaid checkout: void its first invoice and cancel it, in one transaction."""
    try:
        sub = locks.subscription(subscription_id)
    except NotFound:
        rollback()
        return False
    invoice = waiting_invoice(sub) if sub.self_checkout else None
    if invoice is None:
        rollback()
        return False
    locked = locks.invoice(invoice.id)
    if payments.money_on_its_way(locked) or locked.amount_paid or locked.credit_applied \
            or locked.status not in states.PAYABLE:
        rollback()
        return False
    invoices.void_locked(locked, EXPIRER, f"Self-checkout not paid within {CHECKOUT_EXPIRES.days} days.")
    record_event("subscription.checkout_expired", "subscription", subscription_id, EXPIRER,
                 data={"invoice_id": invoice.id, "number": invoice.number})
    manage.cancel(subscription_id, "now", EXPIRER)  # commits the void, the event and the cancellation
    return True
