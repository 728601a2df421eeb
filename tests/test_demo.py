"""``modelrollout demo``: what it shows and when it says PASS, and the whole demo end to end.

Unit: when a version counts as settled (promoted, or rolled back), the lines the demo prints
without a terminal (each change once), and the live view's content. End to end (e2e): the demo
as a user runs it, with every real part, exits 0 with its summary, and leaves no process behind.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from modelrollout.sandbox import demo
from processes import free_base_port


def status(phase: str, stable: str, canary: str | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"phase": phase, "stable": {"version": stable}, **extra}
    if canary is not None:
        found["canary"] = {"version": canary}
    return found


def test_a_version_is_settled_once_promoted_or_rolled_back() -> None:
    promoted = status("Succeeded", "2", history=[
        {"model": {"version": "1"}, "outcome": "Initialized", "message": "first stable model"},
        {"model": {"version": "2"}, "outcome": "Promoted", "message": "analysis passed"},
    ])  # fmt: skip
    assert demo._result(promoted, "2") == ("Promoted", "analysis passed")
    assert demo._result(promoted, "3") is None  # v3 not looked at yet

    rolled_back = status("Failed", "2", history=[
        {"model": {"version": "2"}, "outcome": "Promoted", "message": "analysis passed"},
        {"model": {"version": "3"}, "outcome": "RolledBack", "message": "metric 'errors' failed"},
    ])  # fmt: skip
    assert demo._result(rolled_back, "3") == ("RolledBack", "metric 'errors' failed")

    # Rolling back (canary still there) or progressing: not settled yet.
    assert demo._result(status("RollingBack", "2", "3"), "3") is None
    assert demo._result(status("Progressing", "2", "3"), "3") is None
    assert demo._result(status("Failed", "2", "3"), "3") is None


def snapshot(weight: int, verdict: str | None, events: list[str]) -> demo.Snapshot:
    metric: dict[str, Any] = {"name": "errors", "evidence": {"canaryTotal": "62"}}
    if verdict:
        metric["verdict"] = verdict
    found = status("Progressing", "1", "2", canaryWeight=weight)
    found["analysis"] = {"metrics": [metric]}
    listed = [{"reason": r, "type": "Normal", "message": f"{r} happened"} for r in events]
    return demo.Snapshot(found, listed, 1.0, "v2")


def test_without_a_terminal_each_change_is_printed_once() -> None:
    seen: set[str] = set()
    first = demo.changes(snapshot(25, None, ["RolloutStarted"]), seen)
    assert first == [
        "phase Progressing, canary weight 25 %",
        "Normal RolloutStarted: RolloutStarted happened",
    ]
    assert demo.changes(snapshot(25, None, ["RolloutStarted"]), seen) == []
    later = demo.changes(snapshot(50, "PASS", ["RolloutStarted", "StepAdvanced"]), seen)
    assert later == [
        "phase Progressing, canary weight 50 %",
        "errors: PASS (canaryTotal=62)",
        "Normal StepAdvanced: StepAdvanced happened",
    ]


def test_the_live_view_shows_versions_weight_verdicts_and_events() -> None:
    console = Console(record=True, width=120)
    console.print(demo.render(snapshot(25, "FAIL", ["AnalysisFailed"])))
    text = console.export_text()
    for shown in ("Progressing", "v1", "v2", "25 %", "errors", "FAIL", "canaryTotal=62",
                  "AnalysisFailed", "demo/diabetes: v2"):  # fmt: skip
        assert shown in text, shown


@pytest.mark.e2e
def test_the_demo_promotes_v2_rolls_back_v3_and_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", "demo", "--run-dir", str(tmp_path),
         "--base-port", str(free_base_port())],
        capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    assert "PASS: v2 promoted, v3 rolled back" in out
    assert "modelrollout demo: summary" in out
    assert "v2 Promoted:" in out
    assert "v3 RolledBack: metric 'errors' failed" in out
    assert "diabetes@champion is version 2" in out
    (run_dir,) = tmp_path.glob("run-*")
    state = json.loads((run_dir / "sandbox.json").read_text())
    assert all("pid" not in entry for entry in state["services"].values())
    for port in state["ports"].values():  # nothing of the sandbox listens any more
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            probe.bind(("127.0.0.1", port))
