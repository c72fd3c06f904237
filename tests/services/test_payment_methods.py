"""Saved payment methods and the autopay switch at the service level (sandbox gateway)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Client, Delivery, Event, PaymentMethod
from portal.services import payment_methods
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor

STAFF = Actor("staff", None, "staff@portal.example")
VISA = "4242424242424242"


@pytest.fixture
def app_settings(app_settings):
    # The concurrency test needs one connection per thread.
    return {**app_settings, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 10}}


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR")
    return make.client()


@pytest.fixture
def contact(acme):
    return acme.contacts[0]


def as_contact(contact) -> Actor:
    return Actor("contact", contact.id, contact.email)


def fresh_client(client_id: int) -> Client:
    db.session.expire_all()
    return db.session.get(Client, client_id)


def events(kind: str) -> list[Event]:
    return list(db.session.scalars(select(Event).where(Event.type == kind).order_by(Event.id)))


def test_the_gateway_customer_is_made_once_and_kept(acme):
    first = payment_methods.ensure_customer(acme.id)
    assert first.startswith("cus_sbx_") and fresh_client(acme.id).gateway_customer_id == first
    assert payment_methods.ensure_customer(acme.id) == first
    payment_methods.add_in_sandbox(acme.id, None, "card", VISA, "12/34")
    assert fresh_client(acme.id).gateway_customer_id == first
    assert len(events("client.gateway_customer_created")) == 1


def test_applying_a_setup_intent_twice_stores_one_method(acme, contact):
    setup = payment_methods.start_setup(acme.id, contact)
    get_gateway().confirm_setup_intent(setup["setup_intent_id"], f"card:{VISA}:12/34", "confirm")
    first = payment_methods.apply_setup_intent(acme.id, setup["setup_intent_id"], contact)
    again = payment_methods.apply_setup_intent(acme.id, setup["setup_intent_id"], contact)
    assert first.id == again.id and first.is_default and first.added_by_contact_id == contact.id
    assert db.session.scalar(select(func.count()).select_from(PaymentMethod)) == 1
    assert len(events("payment_method.added")) == 1


def test_an_unconfirmed_setup_intent_stores_nothing(acme, contact):
    setup = payment_methods.start_setup(acme.id, contact)
    with pytest.raises(ServiceError) as caught:
        payment_methods.apply_setup_intent(acme.id, setup["setup_intent_id"], contact)
    assert not isinstance(caught.value, NotFound)
    assert db.session.scalar(select(func.count()).select_from(PaymentMethod)) == 0


def test_everything_is_scoped_to_the_client(make, acme, contact):
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                    "receives_invoices": True}])
    theirs = payment_methods.add_in_sandbox(other.id, None, "card", VISA, "12/34")
    setup = payment_methods.start_setup(other.id, None)
    get_gateway().confirm_setup_intent(setup["setup_intent_id"], f"card:{VISA}:12/34", "c")
    for call in (lambda: payment_methods.remove(acme.id, theirs.id, as_contact(contact)),
                 lambda: payment_methods.set_default(acme.id, theirs.id, as_contact(contact)),
                 lambda: payment_methods.apply_setup_intent(acme.id, setup["setup_intent_id"], contact),
                 lambda: payment_methods.apply_setup_intent(acme.id, theirs.gateway_setup_id, contact)):
        with pytest.raises(NotFound):
            call()
    assert payment_methods.client_methods(acme.id) == [] and payment_methods.default_method(acme.id) is None
    assert [m.id for m in payment_methods.client_methods(other.id)] == [theirs.id]


def test_the_first_method_is_default_and_removing_it_promotes_the_newest(acme, contact):
    a = payment_methods.add_in_sandbox(acme.id, contact, "card", VISA, "12/34")
    b = payment_methods.add_in_sandbox(acme.id, contact, "card", "5555555555554444", "12/34")
    c = payment_methods.add_in_sandbox(acme.id, contact, "sepa_debit", "DE89370400440532013000", "")
    assert [m.id for m in payment_methods.client_methods(acme.id)] == [a.id, c.id, b.id]
    result = payment_methods.remove(acme.id, a.id, as_contact(contact))
    assert result["new_default"].id == c.id and not result["autopay_off"]
    assert payment_methods.default_method(acme.id).id == c.id
    assert [m.id for m in payment_methods.client_methods(acme.id)] == [c.id, b.id]
    removed = events("payment_method.removed")[0]
    assert removed.actor_kind == "contact" and removed.data["new_default_id"] == c.id


def test_staff_may_set_autopay_even_when_clients_may_not(make, acme, contact):
    payment_methods.add_in_sandbox(acme.id, None, "card", VISA, "12/34")
    make.business(clients_manage_autopay=False)
    with pytest.raises(ServiceError) as caught:
        payment_methods.set_autopay(acme.id, True, as_contact(contact))
    assert "Autopay is set by Tidewater Studio" in caught.value.message
    assert fresh_client(acme.id).autopay is False
    payment_methods.set_autopay(acme.id, True, STAFF)
    assert fresh_client(acme.id).autopay is True
    [on] = events("autopay.turned_on")
    assert on.actor_kind == "staff" and on.after == {"autopay": True}
    payment_methods.set_autopay(acme.id, True, STAFF)  # already on: nothing new
    assert len(events("autopay.turned_on")) == 1


def test_autopay_needs_a_default_method_and_goes_off_with_the_last_one(acme, contact):
    with pytest.raises(ServiceError) as caught:
        payment_methods.set_autopay(acme.id, True, STAFF)
    assert caught.value.field == "autopay"
    method = payment_methods.add_in_sandbox(acme.id, contact, "card", VISA, "12/34")
    payment_methods.set_autopay(acme.id, True, as_contact(contact))
    result = payment_methods.remove(acme.id, method.id, as_contact(contact))
    assert result["autopay_off"] is True and fresh_client(acme.id).autopay is False
    [off] = events("autopay.turned_off")
    assert off.data["reason"] == "no saved payment method left"


def test_timing_in_words_follows_the_client_then_the_business(make, acme):
    assert payment_methods.autopay_timing_text(fresh_client(acme.id)) == "on the day an invoice is issued"
    make.business(autopay_timing="days_before_due", autopay_days_before=1)
    assert payment_methods.autopay_timing_text(fresh_client(acme.id)) == "1 day before the due date"
    client = fresh_client(acme.id)
    client.autopay_timing, client.autopay_days_before = "days_before_due", 7
    db.session.commit()
    assert payment_methods.autopay_timing_text(fresh_client(acme.id)) == "7 days before the due date"
    client.autopay_timing = "on_due_date"
    db.session.commit()
    assert payment_methods.autopay_timing_text(fresh_client(acme.id)) == "on the due date"


def test_two_ticks_at_once_send_the_expiring_card_notice_once(app, make, acme):
    make.business(card_expiry_notice_days=30)
    method = payment_methods.add_in_sandbox(acme.id, None, "card", VISA, "12/34")
    method_id = method.id
    at = datetime(2034, 12, 15, 9, tzinfo=timezone.utc)
    db.session.remove()
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def tick() -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                counts.append(payment_methods.notify_expiring_card(method_id, at))  # two workers, one card
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(counts) == [False, True]
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1
    assert db.session.get(PaymentMethod, method_id).expiry_notified_at == at
    assert payment_methods.expiring_cards(at) == [], "the next tick has nothing to hand over"
