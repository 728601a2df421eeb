"""The git source port: which model a manifest in git names, and which commit said so.

The engine reads credentials from Secrets and passes them in as :class:`GitCredentials`;
an implementation never reads Secrets itself and never lets a credential reach a log line,
an event, the status or an exception message.

Secret keys (:func:`credentials_from_secret`) follow Flux's GitRepository conventions, so a
Secret made for Flux works here too:

- HTTPS: ``password`` (or ``token``) holds the access token, ``username`` is optional
  (``x-access-token`` when absent; GitHub, Gitea and GitLab accept a token as the password);
- SSH: ``identity`` holds the private key (OpenSSH format, no passphrase) and ``known_hosts``
  the host keys to trust; without ``known_hosts`` every host is refused;
- signatures: the allowed-signers Secret (``spec.model.git.verify.allowedSignersSecretRef``)
  holds an OpenSSH allowed-signers file under its key (``allowed_signers`` by default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from modelrollout.api import GitSource as GitSourceSpec
from modelrollout.api import Reason
from modelrollout.errors import SourceError

#: The key of the allowed-signers Secret when ``allowedSignersSecretRef.key`` is not given.
ALLOWED_SIGNERS_KEY = "allowed_signers"
DEFAULT_TOKEN_USERNAME = "x-access-token"


@dataclass(frozen=True)
class GitCredentials:
    """What a fetch may need from Secrets; ``repr`` never shows the secret parts."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    ssh_private_key: str | None = field(default=None, repr=False)
    known_hosts: str | None = field(default=None, repr=False)
    allowed_signers: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in any message (scrubbed wherever text leaves)."""
        return tuple(s for s in (self.token, self.ssh_private_key) if s)


def credentials_from_secret(
    data: Mapping[str, str], allowed_signers: str | None = None
) -> GitCredentials:
    """Credentials from a repository Secret's decoded ``data`` (keys as in the module doc)."""
    token = data.get("password") or data.get("token") or None
    return GitCredentials(
        token=token,
        username=data.get("username") or None,
        ssh_private_key=data.get("identity") or None,
        known_hosts=data.get("known_hosts") or None,
        allowed_signers=allowed_signers,
    )


@dataclass(frozen=True)
class ManifestRevision:
    """The model manifest as committed: which model, and which commit said so."""

    model_uri: str
    commit: str
    author: str
    #: Committer time of ``commit`` in RFC 3339 (UTC), when the change landed on the ref.
    committed_at: str
    notes: str | None = None
    approved_by: tuple[str, ...] = ()
    #: The allowed-signers principal that signed ``commit``; only set when ``verify`` is on.
    signer: str | None = None


class GitSourceError(SourceError):
    """The repository cannot be fetched or read (network, auth, ref, path, size)."""


class ManifestError(SourceError):
    """The manifest is not a valid model manifest (see ``gitsource.manifest``)."""


class UntrustedCommitError(SourceError):
    """``verify`` is on and the commit is unsigned or not signed by an allowed signer."""

    reason = Reason.SOURCE_UNTRUSTED


_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>(?!/).*)$")


def repository_key(url: str) -> str:
    """One name for the ways a repository is written, to match webhooks against specs.

    ``https://github.com/ML/models.git``, ``git@github.com:ml/models`` and
    ``ssh://git@github.com:22/ml/models`` all give ``github.com/ml/models``. Matching is
    deliberately loose (case, port and scheme are dropped): a false match only costs an
    early fetch.
    """
    text = url.strip()
    scp = None if "://" in text else _SCP_LIKE.match(text)
    if scp is not None:
        host, path = scp["host"], scp["path"]
    else:
        parts = urlsplit(text if "://" in text else f"file://{text}")
        host, path = parts.hostname or "", parts.path
    path = path.strip("/")
    path = path.removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path.lower()}"


class GitSource(Protocol):
    async def fetch(
        self, source: GitSourceSpec, credentials: GitCredentials | None = None
    ) -> ManifestRevision:
        """Fetch ``source.ref`` and read the manifest at ``source.path``.

        Raises a :class:`~modelrollout.errors.SourceError`; under ``source.verify`` an
        unsigned or wrongly signed commit raises :class:`UntrustedCommitError`.
        """
        ...
