"""Operator settings from the environment (the chart and the sandbox set them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFIX = "MODELROLLOUT_"


@dataclass(frozen=True)
class Settings:
    #: How often the driving timer wakes each rollout; each rollout's own
    #: intervals are enforced in the core from status, not by this timer.
    timer_seconds: float = 5.0
    #: Namespaces to watch; empty = the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: ``static:<storage-base>`` (no registry server) or ``mlflow`` (later).
    registry: str = "static:s3://models"
    registry_aliases: Path | None = None
    registry_journal: Path | None = None
    #: ``static:<file>`` (values from a JSON file).
    metrics: str = ""
    query_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    liveness_endpoint: str | None = None


def from_env(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        return env.get(PREFIX + name) or None

    def path(name: str) -> Path | None:
        value = get(name)
        return Path(value) if value else None

    namespaces = tuple(n.strip() for n in (get("NAMESPACES") or "").split(",") if n.strip())
    return Settings(
        timer_seconds=float(get("TIMER_SECONDS") or Settings.timer_seconds),
        namespaces=namespaces,
        registry=get("REGISTRY") or Settings.registry,
        registry_aliases=path("REGISTRY_ALIASES"),
        registry_journal=path("REGISTRY_JOURNAL"),
        metrics=get("METRICS") or "",
        query_timeout_seconds=float(get("QUERY_TIMEOUT_SECONDS") or 10.0),
        log_level=get("LOG_LEVEL") or "INFO",
        liveness_endpoint=get("LIVENESS_ENDPOINT"),
    )
