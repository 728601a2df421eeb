"""What an InferenceService's spec goes through, recorded by a watch while a test runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

#: (predictor.model.storageUri, predictor.canaryTrafficPercent)
State = tuple[str | None, int | None]


class SpecRecorder:
    """Each (storageUri, canaryTrafficPercent) the InferenceService spec takes.

    By default a state is recorded when it differs from the last one. ``per_generation``
    records one state per new spec generation instead, so a spec written twice with the same
    split shows twice (how a test sees that nothing was written twice).
    """

    def __init__(
        self, kubeconfig: Path, namespace: str, name: str, *, per_generation: bool = False
    ) -> None:
        self.states: list[State] = []
        self.generations: list[int] = []
        self.per_generation = per_generation
        self.stop = threading.Event()
        self.api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
        self.namespace, self.name = namespace, name
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object,
                "serving.kserve.io",
                "v1beta1",
                self.namespace,
                "inferenceservices",
                field_selector=f"metadata.name={self.name}",
                timeout_seconds=1,
            )
            for event in stream:
                self._see(event["object"])

    def _see(self, obj: dict[str, Any]) -> None:
        predictor = obj["spec"]["predictor"]
        state = (
            predictor.get("model", {}).get("storageUri"),
            predictor.get("canaryTrafficPercent"),
        )
        generation = obj["metadata"].get("generation", 0)
        if self.per_generation:
            if self.generations and generation <= self.generations[-1]:
                return
        elif self.states and self.states[-1] == state:
            return
        self.generations.append(generation)
        self.states.append(state)

    def close(self) -> list[State]:
        self.stop.set()
        self.thread.join(10)
        return self.states
