"""When the operator runs a rollout's next pass (handlers.py's per-rollout daemon).

A pass re-arms its rollout for the core's ``requeue_after``, counted from when the pass read
the clock (not from when it ended, which under load is seconds later), capped at
``MODELROLLOUT_RESYNC_SECONDS``, and wakes the daemon so that it sleeps to the new due time.
A rollout with nothing due waits the resync period. A git source's ``interval`` makes a pass
due as often (``engine.next_due``).
"""

from __future__ import annotations

from dataclasses import replace

import kopf
import pytest

from modelrollout import api, engine, handlers

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
async def test_a_long_pause_is_slept_through_up_to_the_resync_period() -> None:
    """A rollout pausing for longer than the retry timer runs no pass before its pause ends
    (1,000 rollouts in minute-long pauses would otherwise cost 200 passes a second)."""
    assert RESYNC > TIMER
    found = memo()
    handlers._rearm(found, "uid", 0.9 * RESYNC, since=100.0)
    assert found.schedules["uid"].due == pytest.approx(100.0 + 0.9 * RESYNC + LATE_BY)
    handlers._rearm(found, "uid", 10 * RESYNC, since=100.0)
    assert found.schedules["uid"].due == pytest.approx(100.0 + RESYNC + LATE_BY)


def git_spec(interval: str) -> api.ModelRolloutSpec:
    return api.read_spec(
        {
            "model": {"git": {"repository": "https://git.example/m.git", "path": "m.yaml",
                              "interval": interval}},
            "target": {"inferenceService": "m"},
            "strategy": {"steps": [{"setWeight": 50}]},
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    ("requeue_after", "interval", "due"),
    [(None, "10s", 10.0), (3.0, "10s", 3.0), (60.0, "10s", 10.0), (None, "2m", 120.0)],
)
def test_a_git_source_is_looked_at_every_interval(
    requeue_after: float | None, interval: str, due: float
) -> None:
    """A git-sourced rollout is due at its source's next poll if the core asks for nothing
    sooner: a commit is seen on the source's schedule without a webhook (then the resync
    period caps it)."""
    assert engine.next_due(git_spec(interval), requeue_after) == due


def test_a_uri_source_is_due_when_the_core_says() -> None:
    spec = replace(git_spec("10s"), model=api.ModelSource(uri="models:/m/1"))
    assert engine.next_due(spec, None) is None
    assert engine.next_due(spec, 42.0) == 42.0


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
