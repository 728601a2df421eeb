"""The reliability figures: faults injected and survived, bad inputs tried and refused.

A test records what it injects or tries while it runs (``fault(kind)``, ``bad_input(kind)``);
it does not decide what survived. tests/conftest.py settles each test's records from the
test's outcome: the faults and inputs of a test that passed count as survived (refused), those
of a test that failed or errored do not. The terminal summary prints the table, and
``MODELROLLOUT_RELIABILITY_JSON`` names a file to write it to (for docs/reliability.md).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Ledger:
    #: kind -> count, recorded by the test that is running now.
    pending_faults: Counter[str] = field(default_factory=Counter)
    pending_inputs: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_survived: Counter[str] = field(default_factory=Counter)
    inputs_tried: Counter[str] = field(default_factory=Counter)
    inputs_refused: Counter[str] = field(default_factory=Counter)

    def settle(self, passed: bool) -> None:
        """Close the running test's records: survived (refused) only if it passed."""
        self.faults_injected.update(self.pending_faults)
        self.inputs_tried.update(self.pending_inputs)
        if passed:
            self.faults_survived.update(self.pending_faults)
            self.inputs_refused.update(self.pending_inputs)
        self.pending_faults.clear()
        self.pending_inputs.clear()

    def lines(self) -> list[str]:
        out: list[str] = []
        for title, tried, held, did, verb in (
            ("faults", self.faults_injected, self.faults_survived, "injected", "survived"),
            ("bad inputs", self.inputs_tried, self.inputs_refused, "tried", "refused"),
        ):
            if not tried:
                continue
            total, ok = sum(tried.values()), sum(held.values())
            out.append(f"{title}: {total} {did}, {ok} {verb}")
            width = max(len(kind) for kind in tried)
            out.extend(
                f"  {kind:<{width}}  {tried[kind]:>6}  {held[kind]:>6} {verb}"
                for kind in sorted(tried)
            )
        return out

    def write_json(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "faults": {
                        k: {"injected": v, "survived": self.faults_survived[k]}
                        for k, v in sorted(self.faults_injected.items())
                    },
                    "inputs": {
                        k: {"tried": v, "refused": self.inputs_refused[k]}
                        for k, v in sorted(self.inputs_tried.items())
                    },
                },
                indent=2,
            )
        )


LEDGER = Ledger()


def fault(kind: str, count: int = 1) -> None:
    """Record ``count`` faults of ``kind`` injected by the running test."""
    LEDGER.pending_faults[kind] += count


def bad_input(kind: str, count: int = 1) -> None:
    """Record ``count`` bad inputs of ``kind`` tried by the running test."""
    LEDGER.pending_inputs[kind] += count
