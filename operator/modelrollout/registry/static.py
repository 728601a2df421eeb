"""A registry without a server: URIs resolve by convention.

For sandboxes and tests where no MLflow runs: ``models:/name/version`` resolves
to ``<storage_base>/name/version``; aliases come from a JSON file
(``{"name@alias": "7"}``) re-read on each call, so a test can move an alias.
It checks no gates (a configured gate fails with a clear message rather than
passing unchecked) and appends write-backs as JSON lines to a file, if given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelrollout.api import ModelVersionRef, RegistryGates
from modelrollout.api import WriteBack as WriteBackSpec
from modelrollout.decision import GateResult, WriteBack
from modelrollout.errors import RegistryError

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(/(?P<version>[0-9]+)|@(?P<alias>[\w-]+))$")


class StaticRegistry:
    def __init__(
        self, storage_base: str, aliases: Path | None = None, journal: Path | None = None
    ) -> None:
        self.storage_base = storage_base.rstrip("/")
        self.aliases = aliases
        self.journal = journal

    async def resolve(self, uri: str) -> ModelVersionRef:
        match = _URI.fullmatch(uri)
        if match is None:
            raise RegistryError(
                f"{uri!r} is not models:/<name>/<version> or models:/<name>@<alias>"
            )
        name = match["name"]
        version = match["version"] or self._alias(name, match["alias"])
        return ModelVersionRef(
            uri=uri,
            storage_uri=f"{self.storage_base}/{name}/{version}",
            name=name,
            version=version,
        )

    def _alias(self, name: str, alias: str) -> str:
        table = (
            json.loads(self.aliases.read_text()) if self.aliases and self.aliases.exists() else {}
        )
        version = table.get(f"{name}@{alias}")
        if version is None:
            raise RegistryError(f"alias {alias!r} of model {name!r} is not set")
        return str(version)

    async def check_gates(
        self, candidate: ModelVersionRef, stable: ModelVersionRef | None, gates: RegistryGates
    ) -> tuple[GateResult, ...]:
        configured = bool(gates.required_tags or gates.holdout or gates.schema_compatibility)
        if not configured:
            return ()
        return (GateResult("registry", False, "the static registry cannot check gates"),)

    async def write_back(self, outcome: WriteBack, spec: WriteBackSpec, rollout: str) -> None:
        if self.journal is None:
            return
        record = {
            "rollout": rollout,
            "model": outcome.model.key,
            "outcome": outcome.outcome.value,
            "reason": outcome.reason.value,
            "alias": spec.alias,
            "at": outcome.at,
        }
        line = json.dumps(record, sort_keys=True) + "\n"
        # As a real registry's write-back writes only what differs: a pass repeated after a
        # lost status write (same decision, same ``at``) records nothing new.
        if self.journal.exists() and line in self.journal.read_text().splitlines(keepends=True):
            return
        with self.journal.open("a") as journal:
            journal.write(line)
