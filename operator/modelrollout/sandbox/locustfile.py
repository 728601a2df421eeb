"""The sandbox's load: Locust users sending predictions to InferenceServices through the router.

``sandbox up`` starts Locust on this file (its own process, web UI on 127.0.0.1). What to load
is a JSON file, ``MODELROLLOUT_LOAD_FILE``, that anyone may rewrite at any time (the demo and
the tests do; write a temporary file and rename it over this one)::

    {"targets": [{"namespace": "demo", "inferenceService": "diabetes", "rps": 40}]}

Every user reads it again at most once a second; with no targets they idle. Together the users
send each target its ``rps`` requests a second (as far as the machine keeps up), each one a row
of the diabetes dataset bundled with scikit-learn in KServe's v1 protocol. Answers other than
200 are failures in Locust's statistics; the router's metrics are what the operator judges.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, task

USERS = int(os.environ.get("MODELROLLOUT_LOAD_USERS", "8"))
LOAD_FILE = Path(os.environ.get("MODELROLLOUT_LOAD_FILE", "load.json"))
IDLE_SECONDS = 0.5


class _Plan:
    """The load file, read again at most once a second."""

    def __init__(self) -> None:
        self.read_at = 0.0
        self.targets: list[dict[str, Any]] = []

    def current(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if now - self.read_at >= 1.0:
            self.read_at = now
            try:
                found = json.loads(LOAD_FILE.read_text(encoding="utf-8"))
                self.targets = [t for t in found.get("targets", []) if float(t["rps"]) > 0]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.targets = []
        return self.targets


def _rows() -> list[list[float]]:
    from sklearn.datasets import load_diabetes

    features = load_diabetes().data
    return [[float(v) for v in row] for row in features]


PLAN = _Plan()
ROWS = _rows()


class Predictions(HttpUser):
    """One of ``USERS`` users: pace so that all of them together send each target its rate."""

    def wait_time(self) -> float:
        targets = PLAN.current()
        total = sum(float(t["rps"]) for t in targets)
        if total <= 0:
            return IDLE_SECONDS
        return random.expovariate(total / USERS)

    @task
    def predict(self) -> None:
        targets = PLAN.current()
        if not targets:
            return
        target = random.choices(targets, weights=[float(t["rps"]) for t in targets])[0]
        namespace, isvc = target["namespace"], target["inferenceService"]
        self.client.post(
            f"/{namespace}/{isvc}/v1/models/{isvc}:predict",
            json={"instances": [random.choice(ROWS)]},
            name=f"{namespace}/{isvc}",
            timeout=10,
        )
