"""The secret source port: credentials come only from Secret references."""

from __future__ import annotations

from typing import Protocol


class SecretSource(Protocol):
    async def read(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data, decoded; a missing Secret raises SourceError."""
        ...
