"""Set and read status conditions the way Kubernetes controllers do.

``lastTransitionTime`` moves only when a condition's status changes, so a
controller that writes the same condition every pass does not churn it.
"""

from __future__ import annotations

from datetime import datetime

from modelrollout.api import Condition, ConditionStatus, ConditionType, Reason
from modelrollout.clock import rfc3339

TRUE = ConditionStatus.TRUE
FALSE = ConditionStatus.FALSE
UNKNOWN = ConditionStatus.UNKNOWN


def get(conditions: tuple[Condition, ...], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def is_true(conditions: tuple[Condition, ...], kind: ConditionType) -> bool:
    found = get(conditions, kind)
    return found is not None and found.status == TRUE


def set_condition(
    conditions: tuple[Condition, ...],
    kind: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> tuple[Condition, ...]:
    """Conditions with ``kind`` set; order is kept, a new type is appended."""
    old = get(conditions, kind)
    moved = old is None or old.status != status
    new = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=rfc3339(now) if moved or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    if old is None:
        return (*conditions, new)
    if old == new:
        return conditions
    return tuple(new if c.type == kind else c for c in conditions)


def remove(conditions: tuple[Condition, ...], kind: ConditionType) -> tuple[Condition, ...]:
    return tuple(c for c in conditions if c.type != kind)
