"""POST /webhooks/stripe with bodies that are correctly signed but not a well-formed Stripe event.

Every body here carries a valid ``Stripe-Signature`` (signed the way Stripe signs, over the raw
bytes), so the signature check passes and the body itself is what is refused. Each one must answer
a 4xx with a JSON error (Stripe shows it on the endpoint's page) and store nothing; none may answer
500. Well-formed events we do not handle are acknowledged (200 "ignored"), as before.
"""
from __future__ import annotations

import json

import pytest
import redis.exceptions
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from portal.extensions import db
from portal.gateways import base
from portal.models import WebhookEvent
from portal.services import payments
from tests.support.profiles import examples
from tests.support.fake_stripe import FakeStripe, build_event, sign_payload

WHSEC = "whsec_test_portal_endpoint_secret"
URL = "/webhooks/stripe"
HANDLED = "payment_intent.succeeded"


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
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True}}


@pytest.fixture
def intent_id(make):
    """A real open payment attempt, so events about a known intent reach the gateway too."""
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    return payments.start_payment(make.invoice(make.client()).id).gateway_intent_id


def send(client, body: bytes):
    """POST ``body`` signed with the endpoint secret, exactly as Stripe would."""
    return client.post(URL, data=body, headers={"Stripe-Signature": sign_payload(body, WHSEC),
                                                "Content-Type": "application/json"})


def stored() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(WebhookEvent))


def event(**overrides) -> dict:
    """A well-formed event (as ``build_event`` makes it), with some fields replaced or removed."""
    value = json.loads(build_event("customer.created", {"id": "cus_123", "object": "customer"},
                                   event_id="evt_hostile_1"))
    for key, replacement in overrides.items():
        if replacement is REMOVE:
            value.pop(key, None)
        else:
            value[key] = replacement
    return value


REMOVE = object()


def dumps(value) -> bytes:
    return json.dumps(value).encode("utf-8")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MALFORMED: dict[str, bytes] = {
    # Not an object at all.
    "array": b"[]",
    "array of an event": dumps([event()]),
    "string": b'"evt_123"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "empty body": b"",
    "not json": b"not json at all",
    "utf-8 BOM": b"\xef\xbb\xbf" + dumps(event()),
    "non-UTF-8 bytes": dumps(event()).replace(b"cus_123", b"cus_\xff\xfe"),
    "latin-1 body": json.dumps(event(type="customer.cr\u00e9ated"), ensure_ascii=False).encode("latin-1"),
    # The event id.
    "event id missing": dumps(event(id=REMOVE)),
    "event id null": dumps(event(id=None)),
    "event id empty": dumps(event(id="")),
    "event id a number": dumps(event(id=12345)),
    "event id a list": dumps(event(id=["evt_1"])),
    "event id longer than the column": dumps(event(id="evt_" + "x" * 200)),
    "event id with a NUL byte": dumps(event(id="evt_\x00abc")),
    "event id with a newline": dumps(event(id="evt_a\nb")),
    # The type.
    "type missing": dumps(event(type=REMOVE)),
    "type a number": dumps(event(type=7)),
    "type an object": dumps(event(type={"name": HANDLED})),
    "type longer than the column": dumps(event(type="payment_intent." + "s" * 200)),
    "type with a NUL byte": dumps(event(type="payment_intent.succeeded\x00")),
    # created.
    "created a string": dumps(event(created="yesterday")),
    "created a float too big": dumps(event(created=1e400)),
    "created 10**30": dumps(event(created=10**30)),
    "created negative": dumps(event(created=-5)),
    # data and data.object.
    "data missing": dumps(event(data=REMOVE)),
    "data null": dumps(event(data=None)),
    "data a list": dumps(event(data=[{"object": {"id": "pi_1"}}])),
    "data a string": dumps(event(data="object")),
    "data.object missing": dumps(event(data={})),
    "data.object a list": dumps(event(data={"object": [{"id": "pi_1"}]})),
    "data.object a string": dumps(event(data={"object": "pi_1"})),
    "data.object null": dumps(event(data={"object": None})),
    "object id a number": dumps(event(type=HANDLED, data={"object": {"id": 123, "object": "payment_intent"}})),
    "object id a number (other type)": dumps(event(data={"object": {"id": 123}})),
    "object id an object": dumps(event(type=HANDLED, data={"object": {"id": {"id": "pi_1"}}})),
    "object id empty": dumps(event(type=HANDLED, data={"object": {"id": ""}})),
    "object id too long": dumps(event(type=HANDLED, data={"object": {"id": "pi_" + "1" * 300}})),
    "object id with a NUL byte": dumps(event(type=HANDLED, data={"object": {"id": "pi_1\x00"}})),
    "object id with a slash": dumps(event(type=HANDLED, data={"object": {"id": "pi_1/refunds"}})),
    "payment intent event without an object id": dumps(event(type=HANDLED, data={"object": {"amount": 1}})),
    # Hostile content inside the stored object.
    "NUL byte in a nested string": dumps(event(data={"object": {"id": "cus_1", "name": "a\x00b"}})),
    "NUL byte in a key": dumps(event(data={"object": {"id": "cus_1", "na\x00me": "x"}})),
    "lone surrogate": b'{"id": "evt_s", "type": "customer.created", "data": {"object": {"name": "\\ud800"}}}',
    "NaN": b'{"id": "evt_n", "type": "customer.created", "data": {"object": {"balance": NaN}}}',
    "Infinity": b'{"id": "evt_i", "type": "customer.created", "data": {"object": {"balance": -Infinity}}}',
    "float overflowing to infinity": dumps(event(data={"object": {"id": "cus_1", "balance": 1e400}})),
    "integer of 10**100": dumps(event(data={"object": {"id": "cus_1", "balance": 10**100}})),
    "integer of 5000 digits": dumps(event()).replace(b'"customer"}', b'"customer", "n": ' + b"9" * 5000 + b"}"),
    "nested 200 deep": dumps(event()).replace(b'"customer"}', b'"customer", "n": ' + nested(200).encode() + b"}"),
    "nested 100000 deep": dumps(event()).replace(b'"customer"}', b'"customer", "n": ' + nested(100_000).encode()
                                                 + b"}"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_signed_but_malformed_body_is_a_400_and_stores_nothing(app, client, name):
    response = send(client, MALFORMED[name])
    assert response.status_code == 400, (name, response.status_code, response.get_data()[:300])
    assert response.is_json and response.get_json()["error"], name
    assert stored() == 0, name


def test_a_body_of_several_megabytes_is_refused_before_parsing(app, client):
    big = dumps(event(data={"object": {"id": "cus_1", "description": "x" * (3 * 1024 * 1024)}}))
    response = send(client, big)
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"
    assert stored() == 0


def test_a_large_but_plausible_event_is_accepted(app, client):
    body = dumps(event(data={"object": {"id": "cus_1", "metadata": {f"k{i}": "v" * 400 for i in range(50)}}}))
    assert send(client, body).get_json() == {"result": "ignored"}
    assert stored() == 1


def test_well_formed_events_still_work(app, client, intent_id):
    """The control group: the checks refuse only what is broken."""
    assert send(client, dumps(event())).get_json() == {"result": "ignored"}
    body = build_event(HANDLED, {"id": "pi_elsewhere", "object": "payment_intent"})
    assert send(client, body).get_json() == {"result": "unknown intent"}
    body = build_event("balance.available", {"object": "balance", "available": [{"amount": 1, "currency": "eur"}]})
    assert send(client, body).get_json() == {"result": "ignored"}, "an object without an id is fine"
    body = build_event(HANDLED, {"id": intent_id, "object": "payment_intent", "amount": 10000})
    assert send(client, body).status_code == 200
    assert stored() == 4


def test_the_event_limits_match_the_columns(app):
    assert base.EVENT_ID_MAX_LENGTH == WebhookEvent.__table__.c.event_id.type.length
    assert base.EVENT_TYPE_MAX_LENGTH == WebhookEvent.__table__.c.type.type.length


# Random signed JSON ------------------------------------------------------------------------------

hostile_text = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\x00", "pi_1\x00", "\ud800", "x" * 120, "evt_ok_1", "pi_elsewhere"])
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
           | st.floats() | hostile_text)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=16,
)
event_ids = st.sampled_from(["evt_rand_1", "evt_rand_2", "x" * 101]) | json_values
event_types = st.sampled_from([HANDLED, "payment_intent.payment_failed", "customer.created", "p" * 101]) | json_values
objects = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["pi_elsewhere", "INTENT"]) | json_values,
    "object": st.just("payment_intent") | json_values, "amount": json_values, "status": json_values})
event_like = st.fixed_dictionaries(
    {"id": event_ids, "type": event_types,
     "data": st.fixed_dictionaries({"object": objects | json_values}) | json_values},
    optional={"created": st.integers(min_value=0, max_value=2**31) | json_values, "object": st.just("event")})


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "event", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    value = draw(json_values if kind == "json" else event_like)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(body=bodies())
@example(body=b'[{"id": "evt_1"}]')
@example(body=b'{"id": 1, "type": "payment_intent.succeeded", "data": {"object": {"id": 2}}}')
@example(body=b'{"id": "evt_ok_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "INTENT"}}}')
def test_no_signed_body_answers_500(app, client, intent_id, body):
    body = body.replace(b"INTENT", intent_id.encode())
    before = stored()
    response = send(client, body)
    assert response.status_code in (200, 400, 413), (body[:300], response.status_code, response.get_data()[:300])
    assert response.is_json
    if response.status_code == 200:
        assert response.get_json()["result"] in ("ignored", "duplicate", "unknown intent", "applied")
    else:
        assert stored() == before, "a refused body stored nothing"


# Bodies that are too large, however they arrive ------------------------------------------------------

def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(app, client):
    """Chunked transfer (no Content-Length): the view stops reading past the limit."""
    import io

    big = dumps(event(data={"object": {"id": "cus_1", "description": "x" * (2 * base.MAX_EVENT_BYTES)}}))
    response = client.post(URL, input_stream=io.BytesIO(big), environ_base={"wsgi.input_terminated": True},
                           headers={"Stripe-Signature": sign_payload(big, WHSEC), "Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    small = dumps(event())
    response = client.post(URL, input_stream=io.BytesIO(small), environ_base={"wsgi.input_terminated": True},
                           headers={"Stripe-Signature": sign_payload(small, WHSEC), "Content-Type": "application/json"})
    assert response.get_json() == {"result": "ignored"}


def test_the_apps_own_content_length_limit_answers_json(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    big = dumps(event(data={"object": {"id": "cus_1", "description": "x" * 5000}}))
    response = send(client, big)
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    assert stored() == 0


# Failures while handling a good event: rolled back, and the status tells Stripe whether to retry ----------

def flushed_then(exc: Exception):
    """A stand-in for handle_webhook that stores the event row (flushed, not committed), then fails."""
    def handle(event, gateway_name="stripe"):
        db.session.add(WebhookEvent(gateway=gateway_name, event_id=event.id, type=event.type, payload=event.object))
        db.session.flush()
        raise exc
    return handle


def _dbapi(kind):
    return kind("INSERT INTO webhook_event ...", {}, Exception("server closed the connection unexpectedly"))


@pytest.mark.parametrize("name, exc, status, error", [
    ("database down", _dbapi(sa_exc.OperationalError), 503, "unavailable"),
    ("connection lost", _dbapi(sa_exc.InterfaceError), 503, "unavailable"),
    ("pool exhausted", sa_exc.TimeoutError("QueuePool limit reached"), 503, "unavailable"),
    ("redis down", redis.exceptions.ConnectionError("Connection refused"), 503, "unavailable"),
    ("gateway down", base.GatewayError("unreachable", retryable=True), 503, "unavailable"),
    ("value refused by the database", _dbapi(sa_exc.DataError), 400, "invalid_event"),
    ("a bug of ours", RuntimeError("boom"), 500, "handler_failed"),
])
def test_a_failure_in_the_handler_rolls_back_and_answers_json(app, client, monkeypatch, name, exc, status, error):
    monkeypatch.setattr(payments, "handle_webhook", flushed_then(exc))
    response = send(client, dumps(event()))
    assert response.status_code == status, name
    assert response.is_json and response.get_json()["error"] == error, name
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    monkeypatch.undo()
    assert stored() == 0, "the flushed event row was rolled back"
    assert send(client, dumps(event())).get_json() == {"result": "ignored"}, "Stripe's retry goes through"
