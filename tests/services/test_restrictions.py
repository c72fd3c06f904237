"""Restricting clients far behind on payments (portal/services/restrictions.py), at the service level:
where the limit falls (business timezone), which invoices count, the tick's ``refresh`` restricting and
lifting with events, a payment lifting in its own transaction, what a restricted client is refused, and
the notice. (tests/web/test_restriction.py drives the same rule through the pages.)"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Client, Event
from portal.services import restrictions
from portal.services.errors import ServiceError
from tests.support import make

DAY = timedelta(days=1)
TODAY = date(2026, 11, 20)
NOON = datetime.combine(TODAY, time(12), tzinfo=timezone.utc)
BANNER = "Your account is restricted because of overdue invoices."


@pytest.fixture
def rule(app):
    """The rule at 10 days, blocking payment methods and the profile."""
    return make.business(name="Tidewater Studio", currency="EUR", timezone="UTC", restrict_overdue_days=10,
                         restrict_actions=["payment_methods", "profile"])


def fresh(client_id: int) -> Client:
    db.session.expire_all()
    return db.session.get(Client, client_id)


def events(type_: str, client_id: int | None = None) -> list[Event]:
    query = select(Event).where(Event.type == type_, Event.subject_type == "client")
    if client_id is not None:
        query = query.where(Event.subject_id == client_id)
    return list(db.session.scalars(query.order_by(Event.id)))


def owing(client_row, days_overdue: int, amount="100.00", **kwargs):
    """A finalized invoice due ``days_overdue`` days before TODAY."""
    return make.invoice(client_row, amount, due=TODAY - timedelta(days=days_overdue), **kwargs)


def restrict(client_row) -> None:
    """Restrict a client the way the tick does (it has an invoice 11 days overdue)."""
    owing(client_row, 11)
    restrictions.refresh(NOON)
    assert fresh(client_row.id).access_restricted


# Where the limit falls ---------------------------------------------------------------------------------

def test_limit_date_is_none_while_the_rule_is_off(app):
    business = make.business(restrict_overdue_days=None)
    assert restrictions.limit_date(business, NOON) is None
    assert restrictions.far_overdue_invoices(make.client().id, NOON) == []


def test_limit_date_counts_back_from_today_in_the_business_timezone(rule):
    assert restrictions.limit_date(rule, NOON) == TODAY - 10 * DAY
    late_evening = datetime.combine(TODAY, time(23, 30), tzinfo=timezone.utc)
    assert restrictions.limit_date(rule, late_evening) == TODAY - 10 * DAY
    rule.timezone = "Pacific/Auckland"  # already tomorrow there
    assert restrictions.limit_date(rule, late_evening) == TODAY + DAY - 10 * DAY
    rule.timezone = "America/Los_Angeles"  # still yesterday there at 03:00 UTC
    assert restrictions.limit_date(rule, datetime.combine(TODAY, time(3), tzinfo=timezone.utc)) == TODAY - 11 * DAY
    rule.restrict_overdue_days = 0
    assert restrictions.limit_date(rule, NOON) == TODAY - 0 * DAY  # from the first day overdue


def test_limit_date_reads_the_clock_when_no_time_is_given(rule):
    with clock.frozen(NOON):
        assert restrictions.limit_date(rule) == TODAY - 10 * DAY


# Which invoices count ----------------------------------------------------------------------------

def test_far_overdue_means_due_more_than_n_days_ago_and_still_owing(rule):
    acme = make.client()
    eleven = owing(acme, 11)
    owing(acme, 10)  # exactly N days overdue: not yet
    owing(acme, -5)  # not due yet
    owing(acme, 40, status="draft")  # a draft has no due date that counts
    owing(acme, 40, status="void")
    owing(acme, 40, status="paid")
    written_off = owing(acme, 30, status="uncollectible")  # still owed
    part_paid = owing(acme, 20)
    make.payment(part_paid, "40.00")
    found = restrictions.far_overdue_invoices(acme.id, NOON)
    assert [inv.id for inv in found] == [written_off.id, part_paid.id, eleven.id]  # oldest due first


def test_far_overdue_invoices_are_the_clients_own(rule):
    acme, other = make.client(), make.client(name="Other Co")
    owing(other, 30)
    assert restrictions.far_overdue_invoices(acme.id, NOON) == []
    assert restrictions.far_overdue_invoices(987654, NOON) == []


def test_invoices_due_on_one_day_come_in_id_order(rule):
    acme = make.client()
    first, second = owing(acme, 12), owing(acme, 12)
    assert [inv.id for inv in restrictions.far_overdue_invoices(acme.id, NOON)] == [first.id, second.id]


# The tick: restricting and lifting ------------------------------------------------------------------

def test_refresh_restricts_a_client_with_an_invoice_far_overdue_and_records_why(rule):
    acme, other = make.client(), make.client(name="Other Co")
    older, late = owing(acme, 15), owing(acme, 11)
    owing(other, 10)
    with clock.frozen(NOON + timedelta(minutes=3)):
        assert restrictions.refresh(NOON) == 1
    row = fresh(acme.id)
    assert row.access_restricted and row.restricted_at == NOON + timedelta(minutes=3)
    assert not fresh(other.id).access_restricted and fresh(other.id).restricted_at is None
    [event] = events("client.restricted")
    assert event.subject_id == acme.id and (event.actor_kind, event.actor_label) == ("system", "scheduler")
    assert event.before == {"access_restricted": False} and event.after == {"access_restricted": True}
    assert event.data == {"overdue_days": 10, "invoice_ids": [older.id, late.id],
                          "invoices": [older.number, late.number]}


def test_refresh_changes_nothing_twice(rule):
    acme = make.client()
    owing(acme, 11)
    assert restrictions.refresh(NOON) == 1
    since = fresh(acme.id).restricted_at
    assert restrictions.refresh(NOON + timedelta(hours=1)) == 0
    assert restrictions.refresh(NOON + 3 * DAY) == 0
    assert fresh(acme.id).restricted_at == since and len(events("client.restricted")) == 1


def test_refresh_waits_for_the_day_after_the_limit(rule):
    acme = make.client()
    make.invoice(acme, due=TODAY - 10 * DAY)
    assert restrictions.refresh(NOON) == 0 and not fresh(acme.id).access_restricted
    assert restrictions.refresh(NOON + DAY) == 1 and fresh(acme.id).access_restricted


def test_refresh_lifts_a_client_with_nothing_far_overdue_any_more(rule):
    from portal.services import invoices

    acme = make.client()
    late = owing(acme, 11)
    restrictions.refresh(NOON)
    invoices.void(late, make.STAFF, "sent in error")  # voiding does not lift; the next tick does
    assert fresh(acme.id).access_restricted
    assert restrictions.refresh(NOON + timedelta(minutes=5)) == 1
    row = fresh(acme.id)
    assert not row.access_restricted and row.restricted_at is None
    [event] = events("client.unrestricted", acme.id)
    assert event.before == {"access_restricted": True} and event.after == {"access_restricted": False}
    assert event.data["reason"] == "no_longer_overdue" and event.data["restricted_at"] is not None


def test_a_longer_rule_lifts_at_the_next_tick(rule):
    acme = make.client()
    restrict(acme)
    make.business(restrict_overdue_days=30)
    assert restrictions.refresh(NOON) == 1 and not fresh(acme.id).access_restricted
    assert events("client.unrestricted", acme.id)[0].data["reason"] == "no_longer_overdue"


def test_turning_the_rule_off_lifts_every_restricted_client(rule):
    clients = [make.client(name=f"Client {n}") for n in range(3)]
    for row in clients:
        owing(row, 11)
    assert restrictions.refresh(NOON) == 3
    make.business(restrict_overdue_days=None)
    assert restrictions.refresh(NOON) == 3
    assert not any(fresh(row.id).access_restricted for row in clients)
    assert [e.data["reason"] for e in events("client.unrestricted")] == ["rule_off"] * 3
    assert restrictions.refresh(NOON) == 0


def test_refresh_with_the_rule_off_and_nobody_restricted_does_nothing(app):
    make.business(restrict_overdue_days=None)
    owing(make.client(), 400)
    assert restrictions.refresh(NOON) == 0
    assert events("client.restricted") == [] and events("client.unrestricted") == []


def test_refresh_changes_at_most_max_per_tick_clients_a_tick(rule, monkeypatch):
    monkeypatch.setattr(restrictions, "MAX_PER_TICK", 2)
    clients = [make.client(name=f"Client {n}") for n in range(5)]
    for row in clients:
        owing(row, 11)
    assert [restrictions.refresh(NOON) for _ in range(4)] == [2, 2, 1, 0]
    assert db.session.scalar(select(func.count()).select_from(Client).where(Client.access_restricted)) == 5


# A payment lifts at once ------------------------------------------------------------------------

def test_a_payment_that_clears_the_far_overdue_invoice_lifts_in_its_own_transaction(rule):
    acme = make.client()
    owing(acme, 11)
    restrictions.refresh(NOON)
    [late] = restrictions.far_overdue_invoices(acme.id, NOON)
    with clock.frozen(NOON):
        make.payment(late)
    assert not fresh(acme.id).access_restricted
    [event] = events("client.unrestricted", acme.id)
    assert event.data["reason"] == "paid" and event.actor_kind == "staff"


def test_a_partial_payment_or_one_of_two_keeps_the_restriction(rule):
    acme = make.client()
    first, second = owing(acme, 11), owing(acme, 12)
    restrictions.refresh(NOON)
    with clock.frozen(NOON):
        make.payment(first, "40.00")
        assert fresh(acme.id).access_restricted
        make.payment(first)
        assert fresh(acme.id).access_restricted  # the second is still far overdue
        make.payment(second)
    assert not fresh(acme.id).access_restricted
    assert [e.data["reason"] for e in events("client.unrestricted", acme.id)] == ["paid"]


def test_lift_if_clear_answers_whether_it_lifted(rule):
    acme, calm = make.client(), make.client(name="Calm Co")
    late = owing(acme, 11)
    with clock.frozen(NOON):
        restrictions.refresh(NOON)
        assert restrictions.lift_if_clear(calm.id, make.STAFF) is False  # never restricted
        assert restrictions.lift_if_clear(acme.id, make.STAFF) is False  # still far overdue
        assert restrictions.lift_if_clear(123456, make.STAFF) is False  # no such client
        db.session.commit()
        late.status = "void"
        assert restrictions.lift_if_clear(acme.id, make.STAFF) is True
        db.session.commit()
    assert not fresh(acme.id).access_restricted
    assert events("client.unrestricted", acme.id)[0].data["reason"] == "paid"


def test_lift_if_clear_with_the_rule_off_says_so(rule):
    acme = make.client()
    restrict(acme)
    make.business(restrict_overdue_days=None)
    assert restrictions.lift_if_clear(acme.id, make.STAFF) is True
    db.session.commit()
    assert events("client.unrestricted", acme.id)[0].data["reason"] == "rule_off"


# What a restricted client is refused -----------------------------------------------------------------

def test_blocked_actions_follow_the_settings_in_a_fixed_order(rule):
    assert restrictions.blocked_actions(rule) == [("payment_methods", "Add or remove payment methods"),
                                                  ("profile", "Change their portal profile")]
    rule.restrict_actions = ["profile", "autopay", "no_such_action", "new_subscriptions"]
    assert [key for key, _ in restrictions.blocked_actions(rule)] == ["new_subscriptions", "autopay", "profile"]
    rule.restrict_actions = None
    assert restrictions.blocked_actions(rule) == []


@pytest.mark.parametrize("action,words", [
    ("payment_methods", "add or remove payment methods"),
    ("autopay", "turn autopay on or off"),
    ("profile", "change your profile"),
    ("new_subscriptions", "start new subscriptions"),
])
def test_each_chosen_action_is_refused_in_the_clients_words(app, action, words):
    make.business(restrict_overdue_days=10, restrict_actions=[action])
    acme = make.client()
    restrict(acme)
    reason = restrictions.refusal(fresh(acme.id), action)
    assert reason == f"{BANNER} Please pay your overdue invoices to {words} again."
    with pytest.raises(ServiceError) as refused:
        restrictions.ensure_allowed(fresh(acme.id), action)
    assert str(refused.value) == reason
    for other in set(restrictions.RESTRICTABLE) - {action}:  # what staff did not choose stays allowed
        assert restrictions.refusal(fresh(acme.id), other) is None
        restrictions.ensure_allowed(fresh(acme.id), other)


@pytest.mark.parametrize("action", ["pay", "pay_all", "", "PROFILE", "profile ", "__class__", None])
def test_paying_and_anything_unknown_is_never_refused(rule, action):
    acme = make.client()
    restrict(acme)
    assert restrictions.refusal(fresh(acme.id), action) is None
    restrictions.ensure_allowed(fresh(acme.id), action)


def test_an_unrestricted_client_or_none_is_refused_nothing(rule):
    acme = make.client()
    owing(acme, 30)  # far overdue, but the tick has not run: the flag decides
    for action in restrictions.RESTRICTABLE:
        assert restrictions.refusal(fresh(acme.id), action) is None
        assert restrictions.refusal(None, action) is None
        restrictions.ensure_allowed(fresh(acme.id), action)
        restrictions.ensure_allowed(None, action)


# The notice ---------------------------------------------------------------------------------------

def test_the_notice_says_since_when_why_and_what_is_blocked(rule):
    acme = make.client()
    with clock.frozen(NOON):
        late = owing(acme, 11)
        restrictions.refresh(NOON)
        notice = restrictions.notice(fresh(acme.id))
    assert notice["since"] == NOON and notice["days"] == 10
    assert [inv.id for inv in notice["invoices"]] == [late.id]
    assert notice["blocked"] == restrictions.blocked_actions(rule)
    assert notice["client_blocked"] == ["add or remove payment methods", "change your profile"]


def test_no_notice_for_a_client_not_restricted(rule):
    acme = make.client()
    owing(acme, 30)
    assert restrictions.notice(fresh(acme.id)) is None
    assert restrictions.notice(None) is None
