"""R1 self-checkout through the services (seed 004): a client subscribes to a self-serve plan, pays the
first invoice with the sandbox's 4242 (or through Stripe's Payment Element, against the fake Stripe),
the card is saved, the subscription is active, and the next cycle is charged off-session.
Refusals write nothing; a double submit makes one subscription and one invoice; every lookup is
scoped to the contact's client."""
from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import (
    Client,
    Contact,
    Delivery,
    Event,
    Invoice,
    Payment,
    PaymentMethod,
    Subscription,
)
from portal.services import payments, subscriptions
from portal.services.errors import NotFound, ServiceError
from tests.support import make

JUN_1 = datetime(2027, 6, 1, 12, tzinfo=UTC)
JUL_1 = datetime(2027, 7, 1, 12, tzinfo=UTC)
VISA = "4242424242424242"


@pytest.fixture
def studio(app):
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC")
    contact = make.contact_with_login()
    vat = make.tax_rate()
    plan = make.plan(name="Studio membership", unit_price="100.00", setup_fee="50.00", tax_rate=vat, self_serve=True)
    return {"contact_id": contact.id, "client_id": contact.client_id, "plan_id": plan.id}


def contact_of(studio) -> Contact:
    return db.session.get(Contact, studio["contact_id"])


def count(model, **where) -> int:
    db.session.expire_all()
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return db.session.scalar(query)


def subs_of(client_id: int) -> list[Subscription]:
    db.session.expire_all()
    return list(db.session.scalars(select(Subscription).where(Subscription.client_id == client_id)
                                   .order_by(Subscription.id)))


def invoices_of(client_id: int) -> list[Invoice]:
    db.session.expire_all()
    return list(db.session.scalars(select(Invoice).where(Invoice.client_id == client_id).order_by(Invoice.id)))


def receipts_to(email: str) -> list[str]:
    """The subjects of the receipts emailed to ``email``, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(Delivery.subject).where(
        Delivery.recipient == email, Delivery.subject.startswith("Receipt for invoice")).order_by(Delivery.id)))


def test_self_checkout_pays_the_first_invoice_saves_the_card_and_charges_the_next_cycle_off_session(studio):
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "2")
        assert (sub.status, sub.self_checkout, sub.autopay) == ("incomplete", True, True)
        [first] = invoices_of(studio["client_id"])
        assert sub.held_invoice_id == first.id and first.subscription_id == sub.id
        # 2 × €100 + €50 setup, VAT 23 % on top: €307.50, for the service period 1 Jun – 30 Jun 2027.
        assert (first.status, first.total, first.amount_due) == ("open", 30750, 30750)
        assert first.lines[0].period_start.isoformat() == "2027-06-01"
        assert first.autopay_on is None, "the first invoice is paid on the payment form, never charged behind the payer"

        assert subscriptions.pay_first_invoice(contact_of(studio), sub.id, "card", VISA, "12/34") is None

    db.session.expire_all()
    sub = db.session.get(Subscription, sub.id)
    first = db.session.get(Invoice, first.id)
    assert (first.status, first.amount_due) == ("paid", 0)
    assert (sub.status, sub.held_invoice_id, sub.autopay) == ("active", None, True)
    [card] = db.session.scalars(select(PaymentMethod).where(PaymentMethod.client_id == studio["client_id"])).all()
    assert (card.brand, card.last4, card.exp_month, card.exp_year, card.is_default) == ("visa", "4242", 12, 2034, True)
    assert card.gateway == "sandbox" and card.gateway_method_id.startswith("pm_sbx_")
    assert db.session.get(Client, studio["client_id"]).autopay is False, "the client's own autopay stays off"
    assert receipts_to("ana@acme.example") == [f"Receipt for invoice {first.number} from Tidewater Studio"]
    assert [e.type for e in db.session.scalars(select(Event).where(
        Event.subject_type == "subscription", Event.subject_id == sub.id).order_by(Event.id))] == [
        "subscription.created", "subscription.invoiced", "subscription.self_checkout", "subscription.reactivated"]

    # A month later the billing run makes the July invoice and autopay charges the saved card off-session.
    outcome = subscriptions.bill_subscription(sub.id, JUL_1)
    assert outcome.invoices == 1 and outcome.error is None
    _, second = invoices_of(studio["client_id"])
    assert (second.status, second.total, second.amount_due) == ("paid", 24600, 0)  # 2 × €100 + VAT
    assert second.lines[0].period_start.isoformat() == "2027-07-01"
    [charge] = db.session.scalars(select(Payment).where(Payment.invoice_id == second.id)).all()
    assert (charge.status, charge.off_session, charge.payment_method_id) == ("succeeded", True, card.id)
    assert receipts_to("ana@acme.example")[1:] == [f"Receipt for invoice {second.number} from Tidewater Studio"]
    assert db.session.get(Subscription, sub.id).status == "active"


def test_a_declined_card_keeps_the_checkout_waiting_and_saves_nothing_then_4242_starts_it(studio):
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "")
        with pytest.raises(ServiceError) as declined:
            subscriptions.pay_first_invoice(contact_of(studio), sub.id, "card", "4000000000000002", "12/34")
        assert "declined" in declined.value.message
        assert subs_of(studio["client_id"])[0].status == "incomplete"
        assert count(PaymentMethod, client_id=studio["client_id"]) == 0
        assert subscriptions.pay_first_invoice(contact_of(studio), sub.id, "card", VISA, "") is None
    assert subs_of(studio["client_id"])[0].status == "active"
    [card] = db.session.scalars(select(PaymentMethod)).all()
    assert (card.last4, card.exp_year, card.is_default) == ("4242", None, True)  # no expiry typed: kept without


def test_a_restricted_client_blocked_from_new_subscriptions_is_refused_and_nothing_is_written(studio):
    make.business(restrict_overdue_days=10, restrict_actions=["new_subscriptions"])
    client = db.session.get(Client, studio["client_id"])
    client.access_restricted = True
    db.session.commit()
    offer = subscriptions.plan_offer(studio["client_id"], studio["plan_id"])
    assert offer.blocked == ("Your account is restricted because of overdue invoices. "
                             "Please pay your overdue invoices to start new subscriptions again.")
    with pytest.raises(ServiceError) as refused:
        subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
    assert refused.value.message == offer.blocked
    assert count(Subscription) == 0 and count(Invoice) == 0

    make.business(restrict_actions=["payment_methods"])  # another action blocked: subscribing is allowed
    assert subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1").status == "incomplete"


def test_a_double_submit_makes_one_subscription_and_one_invoice(studio):
    with clock.frozen(JUN_1):
        first = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
        again = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
    assert again.id == first.id
    assert count(Subscription) == 1 and count(Invoice) == 1

    # Once paid, subscribing again is a new subscription (a second one of the same plan).
    with clock.frozen(JUN_1):
        subscriptions.pay_first_invoice(contact_of(studio), first.id, "card", VISA, "12/34")
        other = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
    assert other.id != first.id and count(Subscription) == 2 and count(Invoice) == 2


def test_two_requests_at_once_make_one_subscription(studio, app, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite refuses the second writer: 'database is locked', nothing written)")
    barrier = threading.Barrier(2)
    found: list = []

    def go():
        with app.app_context():
            contact = db.session.get(Contact, studio["contact_id"])
            barrier.wait()
            with clock.frozen(JUN_1):
                found.append(subscriptions.start_self_checkout(contact, studio["plan_id"], "1").id)
            db.session.remove()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(found) == 2 and found[0] == found[1]
    assert count(Subscription) == 1 and count(Invoice) == 1


@pytest.mark.parametrize("typed", ["0", "-1", "1.5", "10001", "abc", "²", "1e3"])
def test_a_bad_quantity_is_a_field_error_and_writes_nothing(studio, typed):
    with pytest.raises(subscriptions.CheckoutInvalid) as bad:
        subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], typed)
    assert bad.value.errors == {"quantity": "Use a whole number from 1 to 10,000."}
    assert count(Subscription) == 0 and count(Invoice) == 0


def test_a_plan_in_another_currency_is_refused(studio):
    dollars = make.plan(name="US plan", currency="USD", self_serve=True)
    offer = subscriptions.plan_offer(studio["client_id"], dollars.id)
    assert offer.blocked == "This plan is billed in USD; your account is billed in EUR. Please contact us."
    with pytest.raises(ServiceError) as refused:
        subscriptions.start_self_checkout(contact_of(studio), dollars.id, "1")
    assert refused.value.message == offer.blocked
    assert count(Subscription) == 0


def test_an_archived_or_staff_only_plan_is_not_found(studio):
    staff_only = make.plan(name="Bespoke", self_serve=False)
    archived = make.plan(name="Old plan", self_serve=True)
    subscriptions.set_plan_active(archived, False, make.STAFF)
    for plan_id in (staff_only.id, archived.id, 999999, "x"):
        with pytest.raises(NotFound):
            subscriptions.start_self_checkout(contact_of(studio), plan_id, "1")
        with pytest.raises(NotFound):
            subscriptions.plan_offer(studio["client_id"], plan_id)
    with pytest.raises(NotFound):
        subscriptions.public_offer(staff_only.checkout_key)
    assert count(Subscription) == 0


def test_an_archived_client_is_refused(studio):
    client = db.session.get(Client, studio["client_id"])
    client.archived_at = clock.now()
    db.session.commit()
    with pytest.raises(ServiceError, match="closed"):
        subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
    assert count(Subscription) == 0


def test_another_clients_subscription_is_not_found(studio):
    other = make.contact_with_login(email="olu@other.example", client_name="Other Co")
    with clock.frozen(JUN_1):
        theirs = subscriptions.start_self_checkout(other, studio["plan_id"], "1")
    mine = contact_of(studio)
    for call in (lambda: subscriptions.pay_first_invoice(mine, theirs.id, "card", VISA, "12/34"),
                 lambda: subscriptions.cancel_at_period_end(mine, theirs.id),
                 lambda: subscriptions.drop_checkout(mine, theirs.id),
                 lambda: subscriptions.checkout_outcome(mine, theirs.id),
                 lambda: subscriptions.portal_subscription(studio["client_id"], theirs.id),
                 lambda: subscriptions.pay_page(studio["client_id"], theirs.id)):
        with pytest.raises(NotFound):
            call()
    assert subs_of(other.client_id)[0].status == "incomplete"
    assert subscriptions.portal_subscriptions(studio["client_id"])["subscriptions"] == []


def test_a_trial_starts_at_once_and_its_first_invoice_saves_the_card_it_is_paid_with(studio):
    trial = make.plan(name="Coworking", unit_price="80.00", trial_days=14, self_serve=True)
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), trial.id, "1")
    assert (sub.status, sub.autopay, sub.held_invoice_id) == ("trialing", True, None)
    assert count(Invoice) == 0
    # The trial ends on 15 Jun: the first invoice is made, with no card to charge it goes out as a link.
    subscriptions.bill_subscription(sub.id, datetime(2027, 6, 15, 12, tzinfo=UTC))
    [first] = invoices_of(studio["client_id"])
    assert (first.status, first.amount_due, first.autopay_on) == ("open", 8000, None)
    with clock.frozen(datetime(2027, 6, 15, 13, tzinfo=UTC)):
        payments.pay_in_sandbox(first.id, "card", VISA, "12/34")
    [card] = db.session.scalars(select(PaymentMethod)).all()
    assert card.is_default and card.last4 == "4242"
    subscriptions.bill_subscription(sub.id, datetime(2027, 7, 15, 12, tzinfo=UTC))
    second = invoices_of(studio["client_id"])[1]
    assert second.status == "paid"
    assert db.session.scalars(select(Payment).where(Payment.invoice_id == second.id)).one().off_session


def test_cancel_at_period_end_when_the_business_allows_it(studio):
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
        with pytest.raises(ServiceError, match="hasn't started"):
            subscriptions.cancel_at_period_end(contact_of(studio), sub.id)
        subscriptions.pay_first_invoice(contact_of(studio), sub.id, "card", VISA, "12/34")
        make.business(clients_cancel_subscriptions=False)
        with pytest.raises(ServiceError, match="contact us"):
            subscriptions.cancel_at_period_end(contact_of(studio), sub.id)
        assert subs_of(studio["client_id"])[0].cancel_at_period_end is False
        make.business(clients_cancel_subscriptions=True)
        subscriptions.cancel_at_period_end(contact_of(studio), sub.id)
        row = subscriptions.portal_subscription(studio["client_id"], sub.id)
    assert row.ends_on.isoformat() == "2027-06-30" and row.next_invoice_on is None and not row.can_cancel
    assert subscriptions.bill_subscription(sub.id, JUL_1).invoices == 0
    assert subs_of(studio["client_id"])[0].status == "cancelled"


def test_dropping_an_unpaid_checkout_voids_its_invoice(studio):
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
        subscriptions.drop_checkout(contact_of(studio), sub.id)
    [invoice] = invoices_of(studio["client_id"])
    assert invoice.status == "void" and subs_of(studio["client_id"])[0].status == "cancelled"
    with pytest.raises(ServiceError):
        subscriptions.drop_checkout(contact_of(studio), sub.id)


def test_the_portal_row_says_what_will_be_charged(studio):
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
        waiting = subscriptions.portal_subscription(studio["client_id"], sub.id)
        assert (waiting.status_label, waiting.waiting_invoice.amount_due) == ("Waiting for payment", 18450)
        subscriptions.pay_first_invoice(contact_of(studio), sub.id, "card", VISA, "12/34")
        row = subscriptions.portal_subscription(studio["client_id"], sub.id)
    assert (row.status_label, row.next_invoice_on.isoformat(), row.next_amount) == ("Active", "2027-07-01", 12300)
    assert row.charged_to == "VISA •••• 4242" and row.can_cancel
    manual = make.subscription(db.session.get(Client, studio["client_id"]), make.plan(name="Retainer"))
    assert subscriptions.portal_subscription(studio["client_id"], manual.id).charged_to is None  # client autopay off


class TestStripe:
    """The same first payment through Stripe's Payment Element (the fake Stripe server): the intent is
    made on the client's customer with setup_future_usage, and the return stores the saved card."""

    @pytest.fixture
    def fake(self):
        from tests.support.fake_stripe import FakeStripe

        server = FakeStripe().start()
        yield server
        server.stop()
        assert server.errors == [], "the fake Stripe server raised:\n" + "\n".join(server.errors)

    @pytest.fixture
    def app_settings(self, smtp_server, fake) -> dict:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "STRIPE_SECRET_KEY": fake.secret_key,
                "STRIPE_PUBLISHABLE_KEY": "pk_test_portal", "STRIPE_WEBHOOK_SECRET": "whsec_test",
                "STRIPE_API_BASE": fake.url}

    def test_the_payment_element_saves_the_card_to_the_customer(self, studio, fake):
        with clock.frozen(JUN_1):
            sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
            started = subscriptions.pay_first_invoice(contact_of(studio), sub.id, "card", "", "")
        payment = db.session.get(Payment, started["payment_id"])
        intent = fake.intents[payment.gateway_intent_id]
        client = db.session.get(Client, studio["client_id"])
        assert intent["setup_future_usage"] == "off_session" and intent["customer"] == client.gateway_customer_id
        assert started["client_secret"] == intent["client_secret"]

        get_gateway().confirm_intent(payment.gateway_intent_id, "pm_card_visa", "browser-confirm")  # Stripe.js
        assert subscriptions.checkout_outcome(contact_of(studio), sub.id, payment.gateway_intent_id) == "paid"
        assert subs_of(studio["client_id"])[0].status == "active"
        [card] = db.session.scalars(select(PaymentMethod)).all()
        assert (card.gateway, card.brand, card.last4, card.is_default) == ("stripe", "visa", "4242", True)
        assert fake.payment_methods[card.gateway_method_id]["customer"] == client.gateway_customer_id

        outcome = subscriptions.bill_subscription(sub.id, JUL_1)  # the next cycle: off-session on that card
        assert outcome.invoices == 1
        second = invoices_of(studio["client_id"])[1]
        assert second.status == "paid"
        charge = db.session.scalars(select(Payment).where(Payment.invoice_id == second.id)).one()
        assert charge.off_session and charge.payment_method_id == card.id

    def test_an_ordinary_invoice_saves_nothing(self, studio, fake):
        invoice = make.invoice(db.session.get(Client, studio["client_id"]))
        payment = payments.start_payment(invoice.id)
        intent = fake.intents[payment.gateway_intent_id]
        assert intent["setup_future_usage"] is None and intent["customer"] is None
        get_gateway().confirm_intent(payment.gateway_intent_id, "pm_card_visa", "browser-confirm")
        payments.payment_outcome(invoice.id, payment.gateway_intent_id)
        assert count(PaymentMethod) == 0


def test_a_sandbox_payment_of_an_ordinary_invoice_saves_nothing(studio):
    invoice = make.invoice(db.session.get(Client, studio["client_id"]))
    payments.pay_in_sandbox(invoice.id, "card", VISA, "12/34")
    assert db.session.get(Invoice, invoice.id).status == "paid"
    assert count(PaymentMethod) == 0


def test_a_business_that_reviews_recurring_invoices_still_issues_the_checkouts_first_invoice(studio):
    make.business(review_recurring_invoices=True)
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
    [first] = invoices_of(studio["client_id"])
    assert first.status == "open" and first.number and sub.status == "incomplete" and sub.held_invoice_id == first.id


def test_credit_that_covers_the_first_invoice_starts_the_subscription_at_once(studio):
    from portal.services import credits

    credits.add_credit(studio["client_id"], "500.00", "EUR", "Goodwill", make.STAFF)
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(contact_of(studio), studio["plan_id"], "1")
    [first] = invoices_of(studio["client_id"])
    assert (first.status, first.amount_due) == ("paid", 0)
    assert (sub.status, sub.held_invoice_id, sub.autopay) == ("active", None, True)
