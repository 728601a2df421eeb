"""API errors as kube-apiserver reports them: a ``v1 Status`` with reason, message and details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelrollout.schema import FieldError

JSON = dict[str, Any]

_MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
_MEDIA_TYPES = (
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)


class ApiError(Exception):
    """A failed request; :meth:`status` is the body kube-apiserver would send."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified(group: str, plural: str) -> str:
    """``plural.group`` as kube names a group-resource in messages (``plural`` in the core)."""
    return f"{plural}.{group}" if group else plural


def _details(group: str, plural: str, name: str, **extra: Any) -> JSON:
    details: JSON = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = plural
    details.update(extra)
    return details


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, plural)} "{name}" not found',
        _details(group, plural, name),
    )


def no_such_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(group, plural)} "{name}" already exists',
        _details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, detail: str = _MODIFIED) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {detail}',
        _details(group, plural, name),
    )


def forbidden(
    group: str, plural: str, name: str, detail: str, cause: JSON | None = None
) -> ApiError:
    subject = f'{qualified(group, plural)} "{name}"' if name else qualified(group, plural)
    extra = {"causes": [cause]} if cause else {}
    return ApiError(
        403,
        "Forbidden",
        f"{subject} is forbidden: {detail}",
        _details(group, plural, name, **extra),
    )


def _field(error: FieldError) -> str:
    return error.path or "<nil>"


def invalid(group: str, kind: str, name: str, errors: Sequence[FieldError]) -> ApiError:
    """422 Invalid: ``Kind.group "name" is invalid: field: message`` (bracketed when several)."""
    texts = list(dict.fromkeys(f"{_field(e)}: {e.message}" for e in errors))
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    subject = f"{kind}.{group}" if group else kind
    causes = [{"reason": e.type, "message": e.message, "field": _field(e)} for e in errors]
    return ApiError(
        422,
        "Invalid",
        f'{subject} "{name}" is invalid: {summary}',
        _details(group, kind, name, causes=causes),
    )


def unprocessable(detail: str) -> ApiError:
    """422 for a patch that cannot be applied, e.g. a failed JSON-patch ``test`` operation."""
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": detail}]},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "") -> ApiError:
    text = message or "the server does not allow this method on the requested resource"
    return ApiError(405, "MethodNotAllowed", text)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{_MEDIA_TYPES}",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": content_type}]}
        if content_type
        else None,
    )


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        {"Retry-After": str(retry_after)},
    )


def internal_error(detail: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {detail}",
        {"causes": [{"message": detail}]},
    )


def timeout(detail: str = "request did not complete within the allotted timeout") -> ApiError:
    return ApiError(504, "Timeout", f"Timeout: {detail}", {"retryAfterSeconds": 1})
