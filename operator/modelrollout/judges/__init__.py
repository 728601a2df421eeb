"""Judges turn a metric's measurement into a verdict; pure, no I/O."""

from __future__ import annotations

from modelrollout.api import Judge as JudgeKind
from modelrollout.judges.base import Judge, Judgement
from modelrollout.judges.drift import DriftJudge
from modelrollout.judges.sequential import SequentialJudge
from modelrollout.judges.threshold import ThresholdJudge

JUDGES: dict[JudgeKind, Judge] = {
    JudgeKind.THRESHOLD: ThresholdJudge(),
    JudgeKind.SEQUENTIAL: SequentialJudge(),
    JudgeKind.DRIFT: DriftJudge(),
}

__all__ = ["JUDGES", "Judge", "Judgement"]
