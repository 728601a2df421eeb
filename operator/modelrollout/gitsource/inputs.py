"""Checks on what a spec gives the git source, and hygiene for what leaves it (pure).

Everything here runs before git does: a repository URL must use an allowed protocol, carry
no password and not look like an option; a ref must be a plain branch, tag or commit id,
never an option or a revision expression; the manifest path must stay inside the
repository. Messages built from git's output are scrubbed of secrets and URL passwords.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from modelrollout.gitsource.base import GitCredentials, GitSourceError

#: What a repository URL may use unless the caller narrows it.
DEFAULT_PROTOCOLS = ("https", "ssh", "git", "http", "file")
COMMIT_ID = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
_TRANSPORT_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!/)")
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)")


def check_url(url: str, credentials: GitCredentials, protocols: Sequence[str]) -> str:
    """``url`` if git may fetch it with these credentials; :class:`GitSourceError` if not."""
    if not url or len(url) > 2048 or re.search(r"[\x00-\x20\x7f]", url):
        raise GitSourceError("spec.model.git.repository is empty, too long or has whitespace")
    if url.startswith("-"):
        raise GitSourceError("spec.model.git.repository must not start with '-'")
    if _URL_PASSWORD.match(url):
        raise GitSourceError(
            f"spec.model.git.repository {redact_url(url)} carries a password: "
            "put credentials in the Secret named by secretRef"
        )
    scheme = _protocol(url)
    if scheme not in protocols:
        raise GitSourceError(
            f"spec.model.git.repository {redact_url(url)}: protocol {scheme!r} is not allowed "
            f"(allowed: {', '.join(protocols)})"
        )
    if credentials.token and scheme == "http" and not _is_loopback(urlsplit(url).hostname):
        raise GitSourceError(
            f"refusing to send a token to {redact_url(url)} over plain http: use https"
        )
    return url


def _protocol(url: str) -> str:
    if match := _TRANSPORT_PREFIX.match(url):
        return match[1].lower()
    if match := _SCHEME.match(url):
        scheme = match[1].lower()
        return "ssh" if scheme in ("git+ssh", "ssh+git") else scheme
    if _SCP_LIKE.match(url):
        return "ssh"
    return "file"


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_ref(ref: str) -> str:
    """A branch, tag, ``HEAD`` or full commit id git will take as a plain name, never an option."""
    if (
        not ref
        or len(ref) > 255
        or ref.startswith(("-", "/", "."))
        or ref.endswith(("/", "."))
        or _REF_FORBIDDEN.search(ref)
    ):
        raise GitSourceError(
            f"spec.model.git.ref {ref[:80]!r} is not a branch, tag or full commit id"
        )
    return ref


def manifest_path(path: str) -> tuple[str, ...]:
    """``path`` as tree components; refuses absolute paths, ``..`` and control characters."""
    if not path or len(path) > 1024:
        raise GitSourceError("spec.model.git.path is empty or longer than 1024 characters")
    if re.search(r"[\x00-\x1f\x7f]", path):
        raise GitSourceError("spec.model.git.path has control characters")
    if path.startswith("/"):
        raise GitSourceError(
            f"spec.model.git.path {path!r} is absolute: give it relative to the repository root"
        )
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if ".." in parts:
        raise GitSourceError(f"spec.model.git.path {path!r} must not contain '..'")
    if not parts:
        raise GitSourceError(f"spec.model.git.path {path!r} names no file")
    return parts


def redact_url(url: str) -> str:
    """``url`` without any password it carries, for messages."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` without the secrets, whole or line by line (keys are printed in pieces)."""
    for secret in secrets:
        text = text.replace(secret, "***")
        for line in secret.splitlines():
            if len(line.strip()) >= 8:
                text = text.replace(line.strip(), "***")
    return redact_url(text)


def summary(stderr: str, limit: int = 400) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = "; ".join(lines) or "no message from git"
    return text if len(text) <= limit else "..." + text[-limit:]
