"""Errors the adapters raise; the engine turns them into conditions and retries."""

from __future__ import annotations

from modelrollout.api import Reason


class ModelRolloutError(Exception):
    """Base of the errors the operator expects and handles."""

    reason: Reason = Reason.SOURCE_ERROR


class SourceError(ModelRolloutError):
    """The model source (inline URI, git manifest) cannot say which model is wanted."""


class RegistryError(ModelRolloutError):
    """The registry cannot resolve the model or record an outcome."""


class RouterError(ModelRolloutError):
    """The traffic router cannot read or change the InferenceService."""


class MetricsError(ModelRolloutError):
    """The metric provider cannot answer a query."""
