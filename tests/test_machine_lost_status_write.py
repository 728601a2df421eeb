"""A pass whose status write was lost: the router already shows what it asked for.

An operator killed after a pass moved traffic but before it wrote status restarts from the
older status (tests/test_faults_restart.py does it with real processes). ``decide`` must carry
on from the split the lost pass set, never send traffic back to the split the stale status
names, and not post the lost pass's events again; a router that is merely slow (still on the
split before the status's) is waited for as before.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from builders import V1, V2, at, spec, split, wants
from modelrollout import api
from modelrollout.api import Phase, Reason
from modelrollout.clock import rfc3339
from modelrollout.decision import Promote, RouteObservation, SetWeight
from modelrollout.machine import decide

PAUSE_THEN_60: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 60},
    {"pause": {}},
]


def paused_at_20(**fields: object) -> api.ModelRolloutStatus:
    """V2 at 20% in an indefinite pause (step 1), as written before the lost pass."""
    base = api.ModelRolloutStatus(
        phase=Phase.PAUSED,
        stable=V1,
        canary=V2,
        current_step_index=1,
        canary_weight=20,
        canary_started_at=rfc3339(at(0)),
        step_started_at=rfc3339(at(0)),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_promotion_whose_status_was_lost_is_not_undone_nor_swallowed() -> None:
    """Given the status paused at 20% and the router at 60% (the lost pass took promote:1),
    when the pass runs again, then it takes the promotion without sending 20% back."""
    rollout = spec(steps=PAUSE_THEN_60)
    obs = replace(wants(V2, route=split(V1, V2, 60)), action="promote:1")

    decision = decide(rollout, paused_at_20(), obs, at(5))

    assert decision.status.current_step_index == 2
    assert decision.status.canary_weight == 60
    assert decision.status.last_action == "promote:1"
    assert decision.actions == (SetWeight(V1, V2, 60),)
    assert decision.events == ()
    following = decide(rollout, decision.status, obs, at(6))
    assert following.status.current_step_index == 3
    assert following.status.phase == Phase.PAUSED
    assert Reason.INVALID_ACTION not in [e.reason for e in following.events]
    assert all(a != SetWeight(V1, V2, 20) for a in following.actions)


def test_a_timed_pause_whose_next_weight_was_lost_moves_on() -> None:
    """Given a finished 1-minute pause at 20% and the router already at 60%, when the pass
    runs again, then the rollout is at 60% with nothing sent back."""
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "1m"}},
        {"setWeight": 60},
    ]
    rollout = spec(steps=steps)
    given = paused_at_20()

    decision = decide(rollout, given, wants(V2, route=split(V1, V2, 60)), at(61))

    assert decision.status.current_step_index == 2
    assert decision.actions == (SetWeight(V1, V2, 60),)


def test_a_lost_promote_full_is_finished_not_reverted() -> None:
    """Given the status paused at 20% and the router serving V2 alone (the lost pass took
    promote-full:1), when the pass runs again, then the rollout is Promoting V2."""
    rollout = spec(steps=PAUSE_THEN_60)
    serving_v2_alone = RouteObservation(stable_storage_uri=V2.storage_uri)
    obs = replace(wants(V2, route=serving_v2_alone), action="promote-full:1")

    decision = decide(rollout, paused_at_20(), obs, at(5))

    assert decision.status.phase == Phase.PROMOTING
    assert decision.actions == (Promote(V2),)


def test_a_router_still_on_the_previous_weight_is_waited_for() -> None:
    """Given the status at step 1 (0%) after step 0 (1%), when the router still shows 1%,
    then that is a slow router, not a lost pass: 0% is asked for again."""
    rollout = spec(steps=[{"setWeight": 1}, {"setWeight": 0}, {"setWeight": 1}])
    given = paused_at_20(phase=Phase.PROGRESSING, canary_weight=0)

    decision = decide(rollout, given, wants(V2, route=split(V1, V2, 1)), at(5))

    assert decision.status.current_step_index == 1
    assert decision.actions == (SetWeight(V1, V2, 0),)
