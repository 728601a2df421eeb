"""The git source port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelrollout.api import GitSource as GitSourceSpec


@dataclass(frozen=True)
class ManifestRevision:
    """The model manifest as committed: which model, and which commit said so."""

    model_uri: str
    commit: str
    author: str
    committed_at: str


class GitSource(Protocol):
    async def fetch(self, source: GitSourceSpec) -> ManifestRevision:
        """Fetch ``source.ref`` and read the manifest at ``source.path``."""
        ...
