"""Signed commits: under ``verify`` only a commit signed by an allowed signer gives a model.

Covers the ``verify`` path of ``GitRepositorySource`` with real SSH signing keys
(``ssh-keygen``) and commits signed by ``git commit -S`` with ``gpg.format=ssh``: an allowed
signer is recorded as ``signer``; a commit signed by another key, an unsigned commit, a commit
whose content was changed after signing, a signer whose validity has ended, and ``verify``
without allowed signers all fail with reason ``SourceUntrusted``; changing the allowed
signers is not hidden by the polling cache; without ``verify`` signatures are not checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitrepos import FakeClock, Origin, git
from modelrollout import api
from modelrollout.api import Reason
from modelrollout.gitsource.base import GitCredentials, UntrustedCommitError
from modelrollout.gitsource.git import GitRepositorySource

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed"
)

MANIFEST = "models/fraud.yaml"


@dataclass(frozen=True)
class Key:
    private: Path
    public: str

    def allowed(self, principal: str, options: str = "") -> str:
        return f"{principal} {options + ' ' if options else ''}{self.public}\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("alice", "mallory"):
        path = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
            check=True,
            timeout=30,
        )
        made[name] = Key(path, path.with_suffix(".pub").read_text().strip())
    return made


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path / "server")


@pytest.fixture
def source(tmp_path: Path) -> GitRepositorySource:
    return GitRepositorySource(tmp_path / "cache", clock=FakeClock())


def verified(url: str) -> api.GitSource:
    return api.GitSource(
        repository=url,
        path=MANIFEST,
        verify=api.SignatureVerification(api.SecretKeyRef("allowed-signers")),
    )


@pytest.mark.asyncio
async def test_a_commit_signed_by_an_allowed_signer_gives_the_model_and_the_signer(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    commit = origin.commit(
        {MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["alice"].private
    )
    allowed = keys["alice"].allowed("alice@example.com")

    revision = await source.fetch(verified(origin.url), GitCredentials(allowed_signers=allowed))

    assert (revision.commit, revision.model_uri) == (commit, "models:/fraud/2")
    assert revision.signer == "alice@example.com"


@pytest.mark.asyncio
async def test_a_commit_signed_by_a_key_that_is_not_allowed_is_untrusted(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    commit = origin.commit(
        {MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["mallory"].private
    )
    allowed = keys["alice"].allowed("alice@example.com")

    with pytest.raises(
        UntrustedCommitError,
        match=f"commit {commit} is signed by a key that is not in the allowed signers",
    ) as caught:
        await source.fetch(verified(origin.url), GitCredentials(allowed_signers=allowed))

    assert caught.value.reason == Reason.SOURCE_UNTRUSTED


@pytest.mark.asyncio
async def test_an_unsigned_commit_is_untrusted(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    origin.commit({MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["alice"].private)
    origin.commit({MANIFEST: "modelUri: models:/fraud/3\n"})
    allowed = keys["alice"].allowed("alice@example.com")

    with pytest.raises(UntrustedCommitError, match="has no signature") as caught:
        await source.fetch(verified(origin.url), GitCredentials(allowed_signers=allowed))

    assert caught.value.reason == Reason.SOURCE_UNTRUSTED


@pytest.mark.asyncio
async def test_a_signed_commit_changed_after_signing_is_untrusted(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    """Same signature block, other tree: the signature no longer matches the content."""
    origin.commit({MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["alice"].private)
    origin.commit({MANIFEST: "modelUri: models:/fraud/666\n"}, push=None)
    evil_tree = git("rev-parse", "HEAD^{tree}", cwd=origin.work)
    signed = git("cat-file", "commit", "HEAD~1", cwd=origin.work)
    forged_text = re.sub(r"^tree [0-9a-f]+$", f"tree {evil_tree}", signed, count=1, flags=re.M)
    forged = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        input=forged_text + "\n",
        cwd=origin.work,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    git("push", "--quiet", "--force", "origin", f"{forged}:refs/heads/main", cwd=origin.work)
    allowed = keys["alice"].allowed("alice@example.com")

    with pytest.raises(UntrustedCommitError, match=f"commit {forged} has a bad signature"):
        await source.fetch(verified(origin.url), GitCredentials(allowed_signers=allowed))


@pytest.mark.asyncio
async def test_a_signer_whose_validity_has_ended_is_untrusted(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    origin.commit(
        {MANIFEST: "modelUri: models:/fraud/2\n"},
        sign_with=keys["alice"].private,
        when="2026-06-01T12:00:00+00:00",
    )
    expired = keys["alice"].allowed("alice@example.com", 'valid-before="20260101"')

    with pytest.raises(UntrustedCommitError, match="not valid at that time"):
        await source.fetch(verified(origin.url), GitCredentials(allowed_signers=expired))


@pytest.mark.asyncio
async def test_verify_without_allowed_signers_trusts_nothing(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    origin.commit({MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["alice"].private)

    with pytest.raises(UntrustedCommitError, match=r"no allowed signers were given"):
        await source.fetch(verified(origin.url), GitCredentials())


@pytest.mark.asyncio
async def test_new_allowed_signers_are_applied_at_once_despite_the_polling_cache(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    origin.commit({MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["mallory"].private)
    only_alice = GitCredentials(allowed_signers=keys["alice"].allowed("alice@example.com"))
    with pytest.raises(UntrustedCommitError):
        await source.fetch(verified(origin.url), only_alice)

    both = GitCredentials(
        allowed_signers=only_alice.allowed_signers + keys["mallory"].allowed("mallory@example.com")
    )
    revision = await source.fetch(verified(origin.url), both)

    assert revision.signer == "mallory@example.com"


@pytest.mark.asyncio
async def test_without_verify_signatures_are_not_checked(
    origin: Origin, source: GitRepositorySource, keys: dict[str, Key]
) -> None:
    origin.commit({MANIFEST: "modelUri: models:/fraud/2\n"}, sign_with=keys["mallory"].private)

    revision = await source.fetch(api.GitSource(repository=origin.url, path=MANIFEST))

    assert (revision.model_uri, revision.signer) == ("models:/fraud/2", None)
