import itertools

import pytest

from portal.billing import states


def test_every_transition_not_in_the_table_raises():
    for state, action in itertools.product(states.STATES, states.ACTIONS + ("delete", "edit", "unpay")):
        if (state, action) in states.TRANSITIONS:
            assert states.transition(state, action) == states.TRANSITIONS[(state, action)]
        else:
            with pytest.raises(states.InvalidTransition):
                states.transition(state, action)


def test_cancelled_is_final_and_paid_only_reopens():
    for action in states.ACTIONS:
        assert not states.can(states.PAID, action) or action == "reopen"
        assert not states.can(states.VOID, action)
    assert states.transition(states.PAID, "reopen") == states.OPEN  # a refund without a credit note


def test_only_drafts_are_editable_and_open_shows_as_sent():
    assert [s for s in states.STATES if states.is_editable(s)] == [states.DRAFT]
    assert states.LABELS[states.OPEN] == "Sent"
    assert states.LABELS[states.VOID] == "Cancelled"


def test_number_format():
    assert states.format_number("INV-{year}-{seq:05d}", 7, 2026, 11) == "INV-2026-00007"
