"""conditions: setting, reading and removing status conditions.

A new type is appended, an existing one replaced in place; lastTransitionTime
moves only when the status changes; nothing changed returns the same tuple.
"""

from __future__ import annotations

import pytest

from builders import T0, at
from modelrollout import conditions
from modelrollout.api import Condition, ConditionType, Reason
from modelrollout.conditions import FALSE, TRUE, UNKNOWN

READY = ConditionType.READY
HEALTHY = ConditionType.HEALTHY
PROGRESSING = ConditionType.PROGRESSING

T0_TEXT = "2026-11-27T12:00:00Z"
LATER_TEXT = "2026-11-27T12:01:00Z"


def ready(status: str = TRUE, reason: Reason = Reason.SERVING, message: str = "ok") -> Condition:
    return Condition(
        type=READY,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=T0_TEXT,
    )


def healthy() -> Condition:
    return Condition(
        type=HEALTHY,
        status=TRUE,
        reason=Reason.ANALYSIS_PASSING,
        message="",
        last_transition_time=T0_TEXT,
    )


def test_constants() -> None:
    assert (TRUE, FALSE, UNKNOWN) == ("True", "False", "Unknown")


def test_set_appends_a_new_type() -> None:
    before = (ready(),)

    after = conditions.set_condition(
        before, PROGRESSING, TRUE, Reason.ROLLOUT_STARTED, "started", at(60), generation=2
    )

    assert after == (
        ready(),
        Condition(
            type=PROGRESSING,
            status=TRUE,
            reason=Reason.ROLLOUT_STARTED,
            message="started",
            last_transition_time=LATER_TEXT,
            observed_generation=2,
        ),
    )


def test_set_on_empty_stamps_now() -> None:
    after = conditions.set_condition((), READY, TRUE, Reason.SERVING, "ok", T0)

    assert after == (ready(),)


def test_set_replaces_in_place_keeping_order() -> None:
    before = (ready(), healthy())

    after = conditions.set_condition(
        before, READY, FALSE, Reason.WAITING_FOR_ANALYSIS, "waiting", at(60)
    )

    assert [c.type for c in after] == [READY, HEALTHY]
    assert after[0] == Condition(
        type=READY,
        status=FALSE,
        reason=Reason.WAITING_FOR_ANALYSIS,
        message="waiting",
        last_transition_time=LATER_TEXT,
    )
    assert after[1] is before[1]


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (Reason.ROLLOUT_COMPLETED, "ok"),
        (Reason.SERVING, "a new message"),
        (Reason.ROLLOUT_COMPLETED, "both differ"),
    ],
)
def test_same_status_keeps_last_transition_time(reason: Reason, message: str) -> None:
    after = conditions.set_condition((ready(),), READY, TRUE, reason, message, at(60))

    assert after == (
        Condition(
            type=READY,
            status=TRUE,
            reason=reason,
            message=message,
            last_transition_time=T0_TEXT,
        ),
    )


@pytest.mark.parametrize(("old", "new"), [(TRUE, FALSE), (FALSE, TRUE), (TRUE, UNKNOWN)])
def test_status_change_moves_last_transition_time(old: str, new: str) -> None:
    after = conditions.set_condition((ready(old),), READY, new, Reason.SERVING, "ok", at(60))

    assert after[0].status == new
    assert after[0].last_transition_time == LATER_TEXT


def test_sub_second_now_is_kept_in_the_stamp() -> None:
    after = conditions.set_condition((), READY, TRUE, Reason.SERVING, "ok", at(0.5))

    assert after[0].last_transition_time == "2026-11-27T12:00:00.500000Z"


def test_nothing_changed_returns_the_same_tuple() -> None:
    before = (ready(), healthy())

    after = conditions.set_condition(before, READY, TRUE, Reason.SERVING, "ok", at(600))

    assert after is before


def test_a_new_generation_is_a_change_but_not_a_transition() -> None:
    before = (ready(),)

    after = conditions.set_condition(
        before, READY, TRUE, Reason.SERVING, "ok", at(60), generation=3
    )

    assert after is not before
    assert after[0].observed_generation == 3
    assert after[0].last_transition_time == T0_TEXT


def test_get_and_is_true() -> None:
    found = (ready(FALSE), healthy())

    assert conditions.get(found, HEALTHY) == healthy()
    assert conditions.get(found, PROGRESSING) is None
    assert conditions.is_true(found, HEALTHY) is True
    assert conditions.is_true(found, READY) is False
    assert conditions.is_true(found, PROGRESSING) is False
    assert conditions.is_true((ready(UNKNOWN),), READY) is False


def test_remove() -> None:
    found = (ready(), healthy())

    assert conditions.remove(found, READY) == (healthy(),)
    assert conditions.remove(found, PROGRESSING) == found
    assert conditions.remove((), READY) == ()
