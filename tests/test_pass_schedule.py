"""When the operator runs a rollout's next pass (handlers.py's per-rollout daemon).

A pass re-arms its rollout for the core's ``requeue_after``, counted from when the pass read
the clock (not from when it ended, which under load is seconds later), capped at
``MODELROLLOUT_TIMER_SECONDS``, and wakes the daemon so that it sleeps to the new due time.
A rollout with nothing due waits ``MODELROLLOUT_RESYNC_SECONDS`` instead.
"""

from __future__ import annotations

import kopf
import pytest

from modelrollout import handlers

TIMER = handlers.SETTINGS.timer_seconds
RESYNC = handlers.SETTINGS.resync_seconds
LATE_BY = handlers._LATE_BY


def memo() -> kopf.Memo:
    found = kopf.Memo()
    found.schedules = {}
    return found


@pytest.mark.asyncio
async def test_the_next_pass_is_due_when_the_core_says_counted_from_the_pass_start() -> None:
    """Given a pass that read the clock at 100 and asked for 1.5 s, then it is due at 101.5
    (plus a hair, so a pause is over when the pass looks), and the daemon is woken."""
    found = memo()
    handlers._rearm(found, "uid", 1.5, since=100.0)
    schedule = found.schedules["uid"]
    assert schedule.due == pytest.approx(101.5 + LATE_BY)
    assert schedule.rearmed.is_set()


@pytest.mark.asyncio
async def test_due_later_than_the_timer_means_the_timer() -> None:
    found = memo()
    handlers._rearm(found, "uid", 10 * TIMER, since=100.0)
    assert found.schedules["uid"].due == pytest.approx(100.0 + TIMER + LATE_BY)


@pytest.mark.asyncio
async def test_nothing_due_means_the_resync_period() -> None:
    """A settled rollout runs a pass every MODELROLLOUT_RESYNC_SECONDS, not every timer."""
    assert RESYNC != TIMER
    found = memo()
    handlers._rearm(found, "uid", None, since=100.0)
    assert found.schedules["uid"].due == pytest.approx(100.0 + RESYNC + LATE_BY)


@pytest.mark.asyncio
async def test_a_due_time_in_the_past_means_at_once() -> None:
    found = memo()
    handlers._rearm(found, "uid", -3.0, since=100.0)
    assert found.schedules["uid"].due == pytest.approx(100.0 + LATE_BY)


@pytest.mark.asyncio
async def test_a_rearm_replaces_the_earlier_due_time() -> None:
    """A change handler's pass moves a daemon's sleep earlier as well as later."""
    found = memo()
    handlers._rearm(found, "uid", 4.0, since=100.0)
    found.schedules["uid"].rearmed.clear()
    handlers._rearm(found, "uid", 0.5, since=101.0)
    assert found.schedules["uid"].due == pytest.approx(101.5 + LATE_BY)
    assert found.schedules["uid"].rearmed.is_set()
