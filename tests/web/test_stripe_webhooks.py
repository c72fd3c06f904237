"""POST /webhooks/stripe: signed events from the Stripe-compatible fake server."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Delivery, Event, Invoice, Payment, WebhookEvent
from portal.services import payments
from tests.support.fake_stripe import FakeStripe, build_event, sign_payload

WHSEC = "whsec_test_portal_endpoint_secret"
URL = "/webhooks/stripe"


@pytest.fixture
def fake():
    server = FakeStripe().start()
    yield server
    server.stop()
    assert server.errors == [], "the fake Stripe server raised:\n" + "\n".join(server.errors)


@pytest.fixture
def app_settings(smtp_server, fake) -> dict:
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "STRIPE_SECRET_KEY": fake.secret_key,
            "STRIPE_PUBLISHABLE_KEY": "pk_test_x", "STRIPE_WEBHOOK_SECRET": WHSEC, "STRIPE_API_BASE": fake.url,
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 10}}


@pytest.fixture
def started(make):
    """An invoice with a Stripe payment attempt, as the guest page starts it: (invoice id, intent id)."""
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    client = make.client()
    invoice = make.invoice(client)
    payment = payments.start_payment(invoice.id)
    return invoice.id, payment.gateway_intent_id


def post(client, payload: bytes, header: str):
    return client.post(URL, data=payload, headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def state(invoice_id):
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice_id)
    pays = db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).all()
    return invoice.status, invoice.amount_paid, [p.status for p in pays], count(WebhookEvent), count(Event)


def paid_event(fake, intent_id, **kwargs):
    get_gateway().confirm_intent(intent_id, "pm_card_visa", f"confirm-{intent_id}")
    return fake.webhook("payment_intent.succeeded", intent_id, WHSEC, **kwargs)


def test_refused_signatures_change_nothing(started, client, fake):
    invoice_id, intent_id = started
    payload, header = paid_event(fake, intent_id)
    before = state(invoice_id)
    ts = int(time.time())
    changed = bytearray(payload)
    changed[payload.index(b'"amount": ') + 10] ^= 1  # one byte of the body
    cases = {
        "no header": (payload, ""),
        "wrong secret": (payload, sign_payload(payload, "whsec_someone_else")),
        "changed byte": (bytes(changed), header),
        "stale": (payload, sign_payload(payload, WHSEC, ts - 301)),
        "future": (payload, sign_payload(payload, WHSEC, ts + 301)),
        "garbage": (payload, "t=abc,v1=def"),
    }
    for name, (body, signature) in cases.items():
        response = post(client, body, signature)
        assert response.status_code == 400, name
        assert response.get_json()["error"] == "bad_signature", name
    assert state(invoice_id) == before
    assert before[0] == "open"


def test_payment_intent_succeeded_pays_the_invoice_and_queues_the_receipt(started, client, fake):
    invoice_id, intent_id = started
    payload, header = paid_event(fake, intent_id)
    response = post(client, payload, header)
    assert response.status_code == 200 and response.get_json() == {"result": "applied"}
    status, paid, pays, hooks, _ = state(invoice_id)
    assert status == "paid" and paid == 10000 and pays == ["succeeded"] and hooks == 1
    assert db.session.scalars(select(Event).where(Event.type == "invoice.paid")).all()
    emails = db.session.scalars(select(Delivery)).all()
    assert any(d.recipient == "ana@acme.example" and "Receipt" in json.dumps(d.payload) for d in emails)


def test_the_same_event_twice_records_one_payment(started, client, fake):
    invoice_id, intent_id = started
    payload, header = paid_event(fake, intent_id)
    assert post(client, payload, header).get_json() == {"result": "applied"}
    after_first = state(invoice_id)
    assert post(client, payload, header).get_json() == {"result": "duplicate"}
    assert state(invoice_id) == after_first


def test_the_same_event_twice_at_once_records_one_payment(started, app, client, fake, db_kind):
    if db_kind != "postgresql":
        pytest.skip("concurrent transactions are PostgreSQL's; SQLite serialises writers")
    invoice_id, intent_id = started
    payload, header = paid_event(fake, intent_id)
    db.session.remove()
    clients = [app.test_client() for _ in range(2)]
    barrier = threading.Barrier(2)
    answers: list = []

    def deliver(c):
        barrier.wait(timeout=30)
        response = post(c, payload, header)
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=deliver, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(a[1]["result"] for a in answers) == ["applied", "duplicate"], answers
    status, paid, pays, hooks, _ = state(invoice_id)
    assert status == "paid" and paid == 10000 and pays == ["succeeded"] and hooks == 1
    assert len(db.session.scalars(select(Event).where(Event.type == "invoice.paid")).all()) == 1


def test_a_failure_arriving_after_success_leaves_the_invoice_paid(started, client, fake):
    invoice_id, intent_id = started
    payload, header = paid_event(fake, intent_id)
    stale_failure = build_event("payment_intent.payment_failed", {**fake.intent_json(intent_id),
                                                                  "status": "requires_payment_method"})
    assert post(client, payload, header).status_code == 200
    response = post(client, stale_failure, sign_payload(stale_failure, WHSEC))
    assert response.status_code == 200
    status, paid, pays, hooks, _ = state(invoice_id)
    assert status == "paid" and paid == 10000 and pays == ["succeeded"] and hooks == 2
    assert not db.session.scalars(select(Event).where(Event.type == "invoice.payment_failed")).all()


def test_a_bank_debit_processes_then_settles_through_webhooks(started, client, fake):
    invoice_id, intent_id = started
    get_gateway().confirm_intent(intent_id, "pm_sepaDebit", f"confirm-{intent_id}")
    payload, header = fake.webhook("payment_intent.processing", intent_id, WHSEC)
    assert post(client, payload, header).status_code == 200
    assert state(invoice_id)[:3] == ("open", 0, ["processing"])
    fake.succeed_processing(intent_id)
    payload, header = fake.webhook("payment_intent.succeeded", intent_id, WHSEC)
    assert post(client, payload, header).status_code == 200
    assert state(invoice_id)[:3] == ("paid", 10000, ["succeeded"])


def test_unknown_intents_and_other_events_are_acknowledged(started, client, fake):
    body = build_event("customer.created", {"id": "cus_123", "object": "customer"})
    assert post(client, body, sign_payload(body, WHSEC)).get_json() == {"result": "ignored"}
    body = build_event("payment_intent.succeeded", {"id": "pi_elsewhere", "object": "payment_intent"})
    assert post(client, body, sign_payload(body, WHSEC)).get_json() == {"result": "unknown intent"}


def test_a_gateway_failure_answers_503_and_rolls_back_so_stripe_retries(started, client, fake):
    invoice_id, intent_id = started
    payload, header = paid_event(fake, intent_id)
    before = state(invoice_id)
    fake.fail_next_with_500(times=3)  # the retrieve inside the handler fails (library retries included)
    response = post(client, payload, header)
    assert response.status_code == 503 and response.get_json()["error"] == "unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert state(invoice_id) == before, "the event row and its effect were rolled back together"
    retry = post(client, payload, header)
    assert retry.status_code == 200 and retry.get_json() == {"result": "applied"}
    assert state(invoice_id)[0] == "paid"
