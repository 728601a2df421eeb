"""One revision's model server: a real ``kserve.ModelServer`` serving an MLflow model.

``python -m modelrollout.sandbox.modelserver --model-dir DIR --name NAME --port N`` loads the
MLflow model in ``DIR`` (a pyfunc, e.g. the artifacts of a model version) and answers KServe's
v1 protocol on 127.0.0.1 only: ``GET /v1/models/NAME`` (ready once loaded: the server only
listens after loading) and ``POST /v1/models/NAME:predict`` with ``{"instances": [[...], ...]}``.
One uvicorn worker, no gRPC server.

kserve 0.21 binds its REST server to 0.0.0.0 (and gRPC to [::]); :class:`_LoopbackServer`
turns gRPC off and rebinds REST to loopback just before the server starts.

Fault injection for the demo's bad models (:class:`Faults`): ``--error-rate R`` answers that
share of predictions with 500, ``--extra-latency-ms M`` delays every prediction, ``--shift S``
adds ``S`` to every predicted value. kserve is imported only in :func:`main`: it parses
``sys.argv`` when imported, so the runtime can import :class:`Faults` without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Faults:
    """What is wrong with a model on purpose (all off by default)."""

    error_rate: float = 0.0
    extra_latency_ms: float = 0.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error rate {self.error_rate} is not within [0, 1]")
        if self.extra_latency_ms < 0:
            raise ValueError(f"extra latency {self.extra_latency_ms} ms is negative")

    def flags(self) -> list[str]:
        """The command-line flags that set these faults (none for the defaults)."""
        found = []
        if self.error_rate:
            found += ["--error-rate", repr(self.error_rate)]
        if self.extra_latency_ms:
            found += ["--extra-latency-ms", repr(self.extra_latency_ms)]
        if self.shift:
            found += ["--shift", repr(self.shift)]
        return found

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Faults:
        """Faults from a model version's tags ``fault.error-rate``, ``fault.extra-latency-ms``
        and ``fault.shift`` (missing tags: no fault)."""
        return cls(
            error_rate=float(tags.get("fault.error-rate", 0.0)),
            extra_latency_ms=float(tags.get("fault.extra-latency-ms", 0.0)),
            shift=float(tags.get("fault.shift", 0.0)),
        )


class InjectedFaultError(RuntimeError):
    """The error a faulty model answers with on purpose (kserve turns it into a 500)."""


class Predictor:
    """The model itself, without kserve: load an MLflow pyfunc, predict v1 payloads."""

    def __init__(self, model_dir: str, faults: Faults, seed: int | None = None) -> None:
        self.model_dir = model_dir
        self.faults = faults
        self._rng = random.Random(seed)
        self._model: Any = None

    def load(self) -> None:
        import mlflow.pyfunc  # slow to import: only in the model server's own process

        self._model = mlflow.pyfunc.load_model(self.model_dir)

    async def predict(self, payload: Any) -> dict[str, Any]:
        """v1 ``{"instances": [[...], ...]}`` (kserve passes a REST body as raw bytes)."""
        import numpy as np

        if isinstance(payload, bytes | str):
            payload = json.loads(payload)

        if self.faults.extra_latency_ms:
            await asyncio.sleep(self.faults.extra_latency_ms / 1000.0)
        if self.faults.error_rate and self._rng.random() < self.faults.error_rate:
            raise InjectedFaultError("injected fault: this model fails on purpose")
        instances = np.asarray(payload["instances"], dtype=float)
        predicted = np.asarray(self._model.predict(instances), dtype=float).ravel()
        return {"predictions": [float(v) + self.faults.shift for v in predicted]}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelrollout.sandbox.modelserver",
        description="Serve one MLflow model with kserve on 127.0.0.1 (KServe v1 protocol).",
    )
    parser.add_argument("--model-dir", required=True, help="directory of an MLflow model")
    parser.add_argument("--name", required=True, help="the model's name in /v1/models/NAME")
    parser.add_argument("--port", type=int, required=True, help="HTTP port on 127.0.0.1")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answering 500")
    parser.add_argument("--extra-latency-ms", type=float, default=0.0, help="added delay")
    parser.add_argument("--shift", type=float, default=0.0, help="added to every prediction")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faults = Faults(args.error_rate, args.extra_latency_ms, args.shift)
    predictor = Predictor(args.model_dir, faults, args.seed)
    # kserve parses sys.argv when imported: hide ours from it.
    sys.argv = sys.argv[:1]
    import kserve

    class _MlflowModel(kserve.Model):  # type: ignore[misc]
        def load(self) -> bool:
            predictor.load()
            self.ready = True
            return True

        async def predict(
            self,
            payload: Any,
            headers: dict[str, str] | None = None,
            response_headers: dict[str, str] | None = None,
        ) -> dict[str, Any]:
            return await predictor.predict(payload)

    class _LoopbackServer(kserve.ModelServer):  # type: ignore[misc]
        def setup_event_loop(self) -> None:
            # start() calls this after building the REST server and before serving.
            rest = self._rest_server
            if rest is None or self._grpc_server is not None or self.workers != 1:
                raise RuntimeError("the loopback model server runs one REST worker only")
            rest.config.host = LOOPBACK
            super().setup_event_loop()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    model = _MlflowModel(args.name)
    model.load()
    _LoopbackServer(http_port=args.port, workers=1, enable_grpc=False).start([model])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
