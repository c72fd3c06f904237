"""R1 in the client portal, over HTTP: the Subscriptions tab (only the client's own), cancelling at
period end (POST, CSRF, htmx answers the card; refused when the business doesn't allow it), the
self-serve plans and a plan's page, "Subscribe and pay" through the sandbox's payment form, the
public checkout link (/subscribe/<key>) and its way through the login, restrictions, bad input, and
escaped output."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from babel.dates import format_date
from sqlalchemy import event, func, select

from portal import clock
from portal.billing import cycles
from portal.extensions import db
from portal.models import Client, Contact, Invoice, PaymentMethod, Subscription
from portal.services import subscriptions
from portal.services.settings import get_business
from tests.support.web import csrf_token, post_form, text_of

VISA = "4242424242424242"


@pytest.fixture
def studio(make):
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC")
    contact = make.contact_with_login()
    plan = make.plan(name="Studio membership", unit_price="100.00", self_serve=True)
    return {"contact_id": contact.id, "client_id": contact.client_id, "plan": plan}


@pytest.fixture
def ana(studio, client, auth):
    """The test client, signed in as Ana (Acme Ltd's contact)."""
    assert auth.login_contact().status_code == 302
    return client


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def contact_row(studio) -> Contact:
    return db.session.get(Contact, studio["contact_id"])


def paid_subscription(studio, plan=None, quantity="1") -> Subscription:
    """A self-checkout of ``plan`` (monthly) paid with 4242 today (through the services)."""
    sub = subscriptions.start_self_checkout(contact_row(studio), (plan or studio["plan"]).id, quantity)
    subscriptions.pay_first_invoice(contact_row(studio), sub.id, "card", VISA, "12/34")
    return sub


def day(value) -> str:
    """A date as the pages write it (the business's locale)."""
    return format_date(value, "medium", locale=get_business().locale)


def today():
    return clock.today(get_business().timezone)


def next_month():
    """The second monthly period's first day, for a subscription started today."""
    return cycles.start(today(), "month", 1, 1)


def statements(client, url: str) -> tuple[int, object]:
    seen: list[str] = []

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        response = client.get(url)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert response.status_code == 200
    return len(seen), response


# The tab -------------------------------------------------------------------------------------------

def test_the_tab_lists_only_the_clients_own_subscriptions(studio, ana, make):
    paid_subscription(studio, quantity="2")
    other = make.contact_with_login(email="olu@other.example", client_name="Other Co")
    secret_plan = make.plan(name="Other Co's private plan", self_serve=True)
    theirs = subscriptions.start_self_checkout(other, secret_plan.id, "1")

    page = ana.get("/portal/subscriptions")
    assert page.status_code == 200
    words = text_of(page)
    assert 'aria-current="page">Subscriptions</a>' in page.get_data(as_text=True)
    assert "Plan Studio membership × 2" in words and "Active" in words
    assert f"Next invoice {day(next_month())}: €200.00" in words
    assert "Charged to VISA •••• 4242" in words
    assert "Other Co's private plan" not in words

    # Another client's subscription is a 404 wherever its id is put.
    assert ana.get(f"/portal/subscriptions/{theirs.id}/pay").status_code == 404
    assert ana.get(f"/portal/subscriptions/{theirs.id}/paid").status_code == 404
    for action in ("cancel", "drop", "pay"):
        assert post_form(ana, f"/portal/subscriptions/{theirs.id}/{action}").status_code == 404
    assert db.session.get(Subscription, theirs.id).status == "incomplete"


def test_a_subscription_paid_by_link_says_so(studio, ana, make):
    client = db.session.get(Client, studio["client_id"])
    make.subscription(client, make.plan(name="Retainer", unit_price="300.00"))  # staff's, autopay follows the client
    page = ana.get("/portal/subscriptions")
    assert "Retainer" in text_of(page) and "You will receive a payment link" in text_of(page)


def test_the_tab_reads_one_statement_per_live_subscription_at_most(studio, ana, make):
    paid_subscription(studio)
    few, _ = statements(ana, "/portal/subscriptions")
    for i in range(4):
        paid_subscription(studio, make.plan(name=f"Extra {i}", unit_price="10.00", self_serve=True))
    many, page = statements(ana, "/portal/subscriptions")
    assert text_of(page).count("Charged to VISA •••• 4242") == 5
    assert many - few <= 4  # schedule.preview reads a subscription's waiting proration charges, one statement each


def test_cancel_at_period_end_over_htmx_then_refused_when_the_business_forbids_it(studio, ana, make):
    sub = paid_subscription(studio)
    url = f"/portal/subscriptions/{sub.id}/cancel"
    assert 'hx-confirm="Cancel Studio membership?' in ana.get("/portal/subscriptions").get_data(as_text=True)

    assert ana.post(url, headers={"HX-Request": "true"}).status_code == 400  # no CSRF token
    assert db.session.get(Subscription, sub.id).cancel_at_period_end is False
    assert ana.get(url).status_code == 405  # no change on GET

    answer = post_form(ana, url, htmx=True)
    assert answer.status_code == 200
    card = text_of(answer)
    assert answer.get_data(as_text=True).lstrip().startswith(f'<article class="subscription-card" id="subscription-{sub.id}"')
    assert "Cancelled. Nothing more will be billed" in card
    assert f"Ends on {day(next_month() - timedelta(days=1))}" in card  # the last day of the period paid for
    assert "Cancel at period end" not in card
    db.session.expire_all()
    assert db.session.get(Subscription, sub.id).cancel_at_period_end is True

    other = paid_subscription(studio, make.plan(name="Desk", unit_price="20.00", self_serve=True))
    make.business(clients_cancel_subscriptions=False)
    assert "Cancel at period end" not in text_of(ana.get("/portal/subscriptions"))
    refused = post_form(ana, f"/portal/subscriptions/{other.id}/cancel", follow_redirects=True)
    assert "Please contact us to cancel this subscription." in text_of(refused)
    db.session.expire_all()
    assert db.session.get(Subscription, other.id).cancel_at_period_end is False


# Self-checkout over HTTP ------------------------------------------------------------------------------

def test_subscribe_and_pay_with_the_sandbox_card(studio, ana):
    plan = studio["plan"]
    listing = ana.get("/portal/subscriptions")
    assert "Browse plans" in text_of(listing)
    plans = ana.get("/portal/subscriptions/plans")
    assert "Studio membership" in text_of(plans) and "€100.00 every month" in text_of(plans)

    page = ana.get(f"/portal/subscriptions/plans/{plan.id}")
    assert "Due today €100.00" in text_of(page) and "Subscribe and pay" in text_of(page)
    started = post_form(ana, f"/portal/subscriptions/plans/{plan.id}", {"quantity": "3"})
    assert started.status_code == 303
    [sub] = db.session.scalars(select(Subscription)).all()
    assert started.headers["Location"].endswith(f"/portal/subscriptions/{sub.id}/pay")
    again = post_form(ana, f"/portal/subscriptions/plans/{plan.id}", {"quantity": "3"})  # a double submit
    assert again.headers["Location"] == started.headers["Location"]
    assert count(Subscription) == 1 and count(Invoice) == 1

    pay_page = ana.get(f"/portal/subscriptions/{sub.id}/pay")
    html = pay_page.get_data(as_text=True)
    assert "Pay €300.00" in text_of(pay_page) and f'action="/portal/subscriptions/{sub.id}/pay"' in html
    paid = post_form(ana, f"/portal/subscriptions/{sub.id}/pay",
                     {"method": "card", "card_number": VISA, "expiry": "12/34", "cvc": "123"})
    assert paid.status_code == 303 and paid.headers["Location"].endswith(f"/portal/subscriptions/{sub.id}/paid")
    landed = ana.get(paid.headers["Location"], follow_redirects=True)
    words = text_of(landed)
    assert "Payment received. Your subscription is active" in words
    assert "Charged to VISA •••• 4242" in words and f"Next invoice {day(next_month())}: €300.00" in words
    db.session.expire_all()
    assert db.session.get(Subscription, sub.id).status == "active"
    assert db.session.scalars(select(PaymentMethod.last4)).all() == ["4242"]
    assert ana.get(f"/portal/subscriptions/{sub.id}/pay").status_code == 303  # nothing left to pay


def test_a_declined_card_is_shown_on_the_payment_page(studio, ana):
    post_form(ana, f"/portal/subscriptions/plans/{studio['plan'].id}", {"quantity": "1"})
    [sub] = db.session.scalars(select(Subscription)).all()
    declined = post_form(ana, f"/portal/subscriptions/{sub.id}/pay",
                         {"method": "card", "card_number": "4000000000000002", "expiry": "12/34"})
    assert declined.status_code == 422 and "Your card was declined." in text_of(declined)
    assert db.session.get(Subscription, sub.id).status == "incomplete"


@pytest.mark.parametrize("typed", ["0", "10001", "2.5", "many"])
def test_a_bad_quantity_is_a_field_error_and_nothing_is_written(studio, ana, typed):
    answer = post_form(ana, f"/portal/subscriptions/plans/{studio['plan'].id}", {"quantity": typed})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert 'aria-invalid="true" aria-describedby="quantity-error"' in html
    assert "Use a whole number from 1 to 10,000." in text_of(answer)
    assert f'value="{typed}"' in html
    assert count(Subscription) == 0 and count(Invoice) == 0


def test_a_restricted_client_sees_why_and_cannot_subscribe(studio, ana, make):
    make.business(restrict_overdue_days=10, restrict_actions=["new_subscriptions"])
    client = db.session.get(Client, studio["client_id"])
    client.access_restricted = True
    db.session.commit()
    reason = "Please pay your overdue invoices to start new subscriptions again."
    page = ana.get(f"/portal/subscriptions/plans/{studio['plan'].id}")
    assert reason in text_of(page) and "Subscribe and pay" not in text_of(page)
    assert "start new subscriptions" in text_of(ana.get("/portal/subscriptions"))  # the banner lists it
    refused = post_form(ana, f"/portal/subscriptions/plans/{studio['plan'].id}", {"quantity": "1"})
    assert refused.status_code == 422 and reason in text_of(refused)
    assert count(Subscription) == 0 and count(Invoice) == 0


def test_a_plan_that_is_not_self_serve_or_archived_has_no_page(studio, ana, make):
    staff_only = make.plan(name="Bespoke", self_serve=False)
    archived = make.plan(name="Old", self_serve=True)
    subscriptions.set_plan_active(archived, False, make.STAFF)
    for plan in (staff_only, archived):
        assert ana.get(f"/portal/subscriptions/plans/{plan.id}").status_code == 404
        assert post_form(ana, f"/portal/subscriptions/plans/{plan.id}", {"quantity": "1"}).status_code == 404
    assert ana.get("/portal/subscriptions/plans/99999999999999999999").status_code == 404
    assert "Bespoke" not in text_of(ana.get("/portal/subscriptions/plans"))
    assert count(Subscription) == 0


def test_staff_may_not_use_the_portal_pages(studio, client, auth, make):
    user = make.staff()
    auth.login_staff(user.email, user.plain_password)
    assert client.get("/portal/subscriptions").status_code == 403


# The public checkout link ---------------------------------------------------------------------------

def test_the_public_link_shows_the_plan_then_the_login_leads_back_to_it(studio, client, make):
    make.business(brand_color="#0f766e")
    plan = studio["plan"]
    page = client.get(f"/subscribe/{plan.checkout_key}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Studio membership" in text_of(page) and "€100.00 every month" in text_of(page)
    assert "Tidewater Studio" in text_of(page) and "/branding.css" in html
    target = f"/portal/subscriptions/plans/{plan.id}"
    sign_in = f"/portal/login?next={target}"
    assert f'href="{sign_in}"' in html

    signed_in = client.post(sign_in, data={"email": "ana@acme.example", "password": "client password 1",
                                           "csrf_token": csrf_token(client, sign_in)})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == target
    again = client.get(f"/subscribe/{plan.checkout_key}")  # signed in: straight to the portal's plan page
    assert again.status_code == 303 and again.headers["Location"].endswith(target)
    assert "Subscribe and pay" in text_of(client.get(target))


def test_a_visitor_opening_the_portal_plan_page_is_sent_to_login_and_back(studio, client):
    target = f"/portal/subscriptions/plans/{studio['plan'].id}"
    bounce = client.get(target)
    assert bounce.status_code == 302 and bounce.headers["Location"] == f"/portal/login?next={target}"


@pytest.mark.parametrize("key", ["x", "0" * 16, "a" * 200, "..%2F..%2Fetc", "%00" * 20, "ключ" * 5, "<script>"])
def test_garbage_keys_are_404(studio, client, key):
    assert client.get(f"/subscribe/{key}").status_code == 404


def test_a_plan_that_is_not_self_serve_or_archived_has_no_public_page(studio, client, make):
    staff_only = make.plan(name="Bespoke", self_serve=False)
    assert client.get(f"/subscribe/{staff_only.checkout_key}").status_code == 404
    subscriptions.set_plan_active(studio["plan"], False, make.STAFF)
    assert client.get(f"/subscribe/{studio['plan'].checkout_key}").status_code == 404


def test_a_plan_name_is_escaped_everywhere(studio, ana, make):
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    plan = make.plan(name=evil, unit_price="5.00", self_serve=True, description="<b>bold</b>")
    paid_subscription(studio, plan)
    for url in ("/portal/subscriptions", "/portal/subscriptions/plans", f"/portal/subscriptions/plans/{plan.id}",
                f"/subscribe/{plan.checkout_key}"):
        response = ana.get(url, follow_redirects=True)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, url
        assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>bold</b>" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
    assert re.search(r"&lt;script&gt;alert\(1\)", ana.get("/portal/subscriptions").get_data(as_text=True))


class TestStripe:
    """With Stripe: "Pay" mounts the Payment Element for an intent that saves the card, and its return
    page (/portal/subscriptions/<id>/paid?payment_intent=…) books it and starts the subscription."""

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

    def test_the_payment_element_then_the_return_starts_the_subscription(self, studio, ana, fake):
        from portal.gateways import get_gateway
        from portal.models import Payment

        sub = subscriptions.start_self_checkout(contact_row(studio), studio["plan"].id, "1")
        page = ana.get(f"/portal/subscriptions/{sub.id}/pay")
        assert "Pay €100.00 online" in text_of(page) and not fake.intents, "nothing is started by just looking"
        started = post_form(ana, f"/portal/subscriptions/{sub.id}/pay", {"method": "card"})
        assert started.status_code == 200
        html = started.get_data(as_text=True)
        [payment] = db.session.scalars(select(Payment)).all()
        intent = fake.intents[payment.gateway_intent_id]
        assert intent["setup_future_usage"] == "off_session" and intent["customer"]
        assert f'data-client-secret="{intent["client_secret"]}"' in html
        assert f'data-return-url="http://localhost/portal/subscriptions/{sub.id}/paid"' in html

        get_gateway().confirm_intent(payment.gateway_intent_id, "pm_card_visa", "browser-confirm")  # Stripe.js
        back = ana.get(f"/portal/subscriptions/{sub.id}/paid?payment_intent={payment.gateway_intent_id}"
                       "&redirect_status=succeeded", follow_redirects=True)
        assert "Your subscription is active" in text_of(back) and "Charged to VISA •••• 4242" in text_of(back)
        assert ana.get(f"/portal/subscriptions/{sub.id}/paid?payment_intent=pi_not_ours").status_code == 404
