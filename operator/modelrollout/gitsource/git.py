"""The git source on the real ``git`` client, run as a subprocess (never through a shell).

One bare cache repository per repository URL (named by a hash of the URL) under a
configurable directory. Each fetch is ``git fetch --depth=1`` of the one ref into
``refs/modelrollout/fetched``; the manifest is read from the object store by walking the
tree (``git ls-tree``) and reading one blob (``git cat-file``), so no work tree exists and no
symlink can lead out of the repository.

Bounds: every git call has a timeout (its whole process group is killed when it runs out)
and a cap on what it may print; the fetch asks the server to leave out blobs larger than the
manifest limit (``--filter=blob:limit``, ignored by servers without it) and the cache is
wiped when it grows above ``max_repository_bytes``. Lazy fetching of left-out blobs is
disabled, so a left-out blob reads as "larger than the limit".

Credentials and processes are ``gitsource.runner``'s business (no secret in argv, a clean
environment, host-checked credentials, killed process groups); the checks on the spec's URL,
ref and path are ``gitsource.inputs``'. Every message that leaves this module is scrubbed of
the secrets it was given.

Polling: a result (or an error) is reused until ``spec.model.git.interval`` has passed on the
injected clock, less :data:`EARLY` seconds (at most a tenth of the interval): the pass that
polls when the interval is up (``engine.next_due``) reads the clock a little sooner into its
work than the pass that fetched did, and must not find the result a hair too young;
:meth:`GitRepositorySource.invalidate` (the webhook's hook) drops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modelrollout import durations
from modelrollout.api import GitSource as GitSourceSpec
from modelrollout.clock import Clock, SystemClock, parse_time, rfc3339
from modelrollout.errors import SourceError
from modelrollout.gitsource import manifest
from modelrollout.gitsource.base import (
    GitCredentials,
    GitSourceError,
    ManifestRevision,
    UntrustedCommitError,
    repository_key,
)
from modelrollout.gitsource.inputs import (
    COMMIT_ID,
    DEFAULT_PROTOCOLS,
    check_ref,
    check_url,
    manifest_path,
    redact_url,
    scrub,
    summary,
)
from modelrollout.gitsource.runner import (
    MAX_OUTPUT,
    ChildEnvironments,
    GitCommandError,
    GitRunner,
    write_private,
)

log = logging.getLogger(__name__)

#: How much sooner than its interval a fetched result counts as stale (at most a tenth of it).
EARLY = 0.5

FETCHED_REF = "refs/modelrollout/fetched"
#: ``%G?`` of ``git show`` for SSH signatures, as the reason a commit is refused.
_SIGNATURE_PROBLEMS = {
    "N": "has no signature",
    "B": "has a bad signature: its content changed after it was signed",
    "U": "is signed by a key that is not in the allowed signers (or not valid at that time)",
    "E": "has a signature that cannot be checked",
    "X": "has a signature that has expired",
    "Y": "is signed by a key that has expired",
    "R": "is signed by a revoked key",
}
_MODE_TREE, _MODE_SYMLINK, _MODE_GITLINK = "040000", "120000", "160000"
_BLOB_MODES = ("100644", "100755")


@dataclass(frozen=True)
class _Request:
    url: str
    ref: str
    path: tuple[str, ...]
    verify: bool


@dataclass
class _Entry:
    at: datetime
    revision: ManifestRevision | None = None
    error: SourceError | None = None


class GitRepositorySource:
    """:class:`~modelrollout.gitsource.base.GitSource` with the ``git`` binary."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        clock: Clock | None = None,
        git: str = "git",
        ssh: str = "ssh",
        timeout_seconds: float = 60.0,
        max_manifest_bytes: int = manifest.MAX_MANIFEST_BYTES,
        max_repository_bytes: int = 256 * 1024 * 1024,
        allowed_protocols: Sequence[str] = DEFAULT_PROTOCOLS,
        max_concurrent_fetches: int = 4,
    ) -> None:
        self._root = cache_dir
        self._clock = clock or SystemClock()
        self._git = GitRunner(git, timeout_seconds)
        self._ssh = ssh
        self._max_manifest = max_manifest_bytes
        self._max_repository = max_repository_bytes
        self._protocols = tuple(allowed_protocols)
        self._fetches = asyncio.Semaphore(max_concurrent_fetches)
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[tuple[str, str, str, bool, str], _Entry] = {}
        self._generation: dict[str, int] = {}

    # ------------------------------------------------------------ the port

    async def fetch(
        self, source: GitSourceSpec, credentials: GitCredentials | None = None
    ) -> ManifestRevision:
        credentials = credentials or GitCredentials()
        secrets = credentials.secrets()
        request = _Request(
            url=check_url(source.repository, credentials, self._protocols),
            ref=check_ref(source.ref),
            path=manifest_path(source.path),
            verify=source.verify is not None,
        )
        try:
            interval = durations.parse(source.interval)
        except ValueError as error:
            raise GitSourceError(f"spec.model.git.interval: {error}") from None
        signers = hashlib.sha256((credentials.allowed_signers or "").encode()).hexdigest()
        key = (request.url, request.ref, "/".join(request.path), request.verify, signers)
        now = self._clock.now()
        cached = self._cache.get(key)
        fresh_for = interval - min(EARLY, interval / 10)
        if cached is not None and (now - cached.at).total_seconds() < fresh_for:
            return _replay(cached)
        repo = repository_key(request.url)
        generation = self._generation.get(repo, 0)
        entry = _Entry(at=now)
        try:
            entry.revision = await self._fetch(request, credentials)
        except SourceError as error:
            entry.error = type(error)(scrub(str(error), secrets))
        except OSError as error:
            entry.error = GitSourceError(f"git cache {self._root}: {error.strerror or error}")
        if entry.error is not None:
            log.warning("git source %s: %s", redact_url(request.url), entry.error)
        if self._generation.get(repo, 0) == generation:
            self._cache[key] = entry
        return _replay(entry)

    def invalidate(self, repository: str) -> int:
        """Forget what was read from ``repository`` (any spelling); the next fetch runs git.

        Returns how many cached results were dropped. A fetch running meanwhile does not
        store its (possibly older) result.
        """
        repo = repository_key(repository)
        self._generation[repo] = self._generation.get(repo, 0) + 1
        stale = [key for key in self._cache if repository_key(key[0]) == repo]
        for key in stale:
            del self._cache[key]
        return len(stale)

    # ------------------------------------------------------------ one fetch

    async def _fetch(self, request: _Request, credentials: GitCredentials) -> ManifestRevision:
        repo_dir = self._root / hashlib.sha256(request.url.encode()).hexdigest()[:32]
        lock = self._locks.setdefault(repo_dir.name, asyncio.Lock())
        async with lock:
            with self._workspace() as work:
                env = ChildEnvironments(work, credentials, request.url, self._ssh, self._protocols)
                await self._update(repo_dir, request, env, credentials.secrets())
                commit = await self._commit(repo_dir, request, env)
                signer = None
                if request.verify:
                    signer = await self._verify(repo_dir, commit, credentials, env, work)
                blob = await self._find_manifest(repo_dir, commit, request.path, env)
                data = await self._read_blob(repo_dir, blob, request.path, env)
                author, committed_at = await self._metadata(repo_dir, commit, env)
        parsed = manifest.parse(data, self._max_manifest)
        log.info(
            "git source %s at %s: commit %s names %s",
            redact_url(request.url),
            request.ref,
            commit,
            parsed.model_uri,
        )
        return ManifestRevision(
            model_uri=parsed.model_uri,
            commit=commit,
            author=author,
            committed_at=committed_at,
            notes=parsed.notes,
            approved_by=parsed.approved_by,
            signer=signer,
        )

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[Path]:
        """A private directory (0700) for key files and HOME, removed after one fetch."""
        parent = self._root / ".work"
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=parent))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _update(
        self, repo_dir: Path, request: _Request, env: ChildEnvironments, secrets: tuple[str, ...]
    ) -> None:
        """Fetch the ref into the cache; start from an empty cache once if it grew too big."""
        for attempt in range(2):
            if not (repo_dir / "HEAD").exists():
                await self._init(repo_dir, env)
            try:
                async with self._fetches:
                    await self._git.run(
                        [
                            "fetch",
                            "--quiet",
                            "--depth=1",
                            "--no-tags",
                            "--no-write-fetch-head",
                            "--no-recurse-submodules",
                            f"--filter=blob:limit={self._max_manifest + 1}",
                            "--",
                            request.url,
                            f"+{request.ref}:{FETCHED_REF}",
                        ],
                        repo_dir,
                        env.remote,
                    )
            except GitCommandError as failure:
                if failure.timed_out:
                    # a killed fetch can leave lock files that would fail every later one
                    shutil.rmtree(repo_dir, ignore_errors=True)
                raise GitSourceError(
                    _fetch_problem(request, scrub(failure.stderr, secrets))
                ) from None
            size = await asyncio.to_thread(_tree_size, repo_dir)
            if size <= self._max_repository:
                return
            shutil.rmtree(repo_dir, ignore_errors=True)
            if attempt == 1:
                raise GitSourceError(
                    f"{redact_url(request.url)} at {request.ref!r} takes {size // 1024} KiB, "
                    f"above the cache limit of {self._max_repository // 1024} KiB"
                )

    async def _init(self, repo_dir: Path, env: ChildEnvironments) -> None:
        """``git init --bare`` into a fresh name, then rename: a half-made cache never stays."""
        repo_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="init-", dir=repo_dir.parent))
        try:
            await self._git.run(["init", "--quiet", "--bare", str(staging)], None, env.local)
            staging.rename(repo_dir)
        except GitCommandError as failure:
            raise GitSourceError(f"cannot create the git cache: {failure.stderr}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def _commit(self, repo_dir: Path, request: _Request, env: ChildEnvironments) -> str:
        out = await self._local(
            ["rev-parse", "--verify", "--quiet", f"{FETCHED_REF}^{{commit}}"],
            repo_dir,
            env,
            f"{request.ref!r} does not name a commit",
        )
        commit = out.decode().strip()
        if COMMIT_ID.match(request.ref) and commit != request.ref:
            raise GitSourceError(f"fetched {commit} when commit {request.ref} was asked for")
        return commit

    async def _verify(
        self,
        repo_dir: Path,
        commit: str,
        credentials: GitCredentials,
        env: ChildEnvironments,
        work: Path,
    ) -> str:
        """The principal that signed ``commit``; :class:`UntrustedCommitError` otherwise."""
        if not credentials.allowed_signers:
            raise UntrustedCommitError(
                f"commit {commit} cannot be trusted: verify is set but no allowed signers were "
                "given (spec.model.git.verify.allowedSignersSecretRef)"
            )
        signers_file = work / "allowed_signers"
        write_private(signers_file, credentials.allowed_signers)
        config = [
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={signers_file}",
        ]
        out = await self._local(
            [*config, "show", "-s", "--format=%G?%x00%GS%x00%GK", commit],
            repo_dir,
            env,
            f"cannot check the signature of commit {commit}",
        )
        status, principal, key = [*out.decode().strip().split("\x00"), "", ""][:3]
        if status != "G" or not principal:
            problem = _SIGNATURE_PROBLEMS.get(status, "is not signed by an allowed signer")
            raise UntrustedCommitError(
                f"commit {commit} {problem}" + (f" (key {key})" if key else "")
            )
        try:
            # the check git users know, on top of the status: both must say yes
            await self._git.run([*config, "verify-commit", commit], repo_dir, env.local)
        except GitCommandError as failure:
            raise UntrustedCommitError(
                f"commit {commit} failed git verify-commit: {summary(failure.stderr)}"
            ) from None
        return principal

    async def _find_manifest(
        self, repo_dir: Path, commit: str, path: tuple[str, ...], env: ChildEnvironments
    ) -> str:
        """The blob id at ``path``, walking the tree so no symlink or submodule is followed."""
        tree = f"{commit}^{{tree}}"
        for depth, name in enumerate(path):
            shown = "/".join(path[: depth + 1])
            listing = await self._local(
                ["ls-tree", "-z", "--full-tree", tree], repo_dir, env, f"cannot list {shown!r}"
            )
            entry = _tree_entry(listing, name)
            if entry is None:
                raise GitSourceError(f"{'/'.join(path)!r} not found at commit {commit}")
            mode, oid = entry
            last = depth == len(path) - 1
            if mode == _MODE_SYMLINK:
                raise GitSourceError(
                    f"{shown!r} is a symbolic link at commit {commit}; the manifest path must "
                    "name a regular file inside the repository"
                )
            if mode == _MODE_GITLINK:
                raise GitSourceError(
                    f"{shown!r} is a submodule at commit {commit}; the manifest must be in the "
                    "repository itself"
                )
            if not last and mode != _MODE_TREE:
                raise GitSourceError(f"{shown!r} is not a directory at commit {commit}")
            if last and mode not in _BLOB_MODES:
                raise GitSourceError(f"{shown!r} is not a regular file at commit {commit}")
            tree = oid
        return tree

    async def _read_blob(
        self, repo_dir: Path, blob: str, path: tuple[str, ...], env: ChildEnvironments
    ) -> bytes:
        shown = "/".join(path)
        try:
            size = int(await self._git.run(["cat-file", "-s", blob], repo_dir, env.local))
        except GitCommandError:
            # the server left the blob out: --filter=blob:limit only drops blobs above the limit
            raise GitSourceError(
                f"manifest {shown!r} is larger than the limit of {self._max_manifest} bytes"
            ) from None
        if size > self._max_manifest:
            raise GitSourceError(
                f"manifest {shown!r} is {size} bytes, above the limit of {self._max_manifest}"
            )
        return await self._local(
            ["cat-file", "blob", blob],
            repo_dir,
            env,
            f"cannot read {shown!r}",
            max_output=self._max_manifest,
        )

    async def _metadata(
        self, repo_dir: Path, commit: str, env: ChildEnvironments
    ) -> tuple[str, str]:
        out = await self._local(
            ["show", "-s", "--no-show-signature", "--format=%an <%ae>%x00%cI", commit],
            repo_dir,
            env,
            f"cannot read commit {commit}",
        )
        author, _, when = out.decode("utf-8", "replace").strip().partition("\x00")
        return author, rfc3339(parse_time(when))

    # ------------------------------------------------------------ running git

    async def _local(
        self,
        args: list[str],
        repo_dir: Path,
        env: ChildEnvironments,
        problem: str,
        max_output: int = MAX_OUTPUT,
    ) -> bytes:
        try:
            return await self._git.run(args, repo_dir, env.local, max_output)
        except GitCommandError as failure:
            raise GitSourceError(f"{problem}: {summary(failure.stderr)}") from None


def _fetch_problem(request: _Request, stderr: str) -> str:
    where = f"git fetch of {redact_url(request.url)} at {request.ref!r} failed"
    hint = ""
    if "couldn't find remote ref" in stderr or "not our ref" in stderr:
        hint = " (no such branch or tag; a commit must be given as its full id)"
    elif "Authentication failed" in stderr or "could not read Username" in stderr:
        hint = " (authentication failed: check the Secret in secretRef)"
    elif "Host key verification failed" in stderr:
        hint = " (unknown host key: add the host to known_hosts in the Secret)"
    return f"{where}{hint}: {summary(stderr)}"


def _tree_entry(listing: bytes, name: str) -> tuple[str, str] | None:
    """``(mode, oid)`` of ``name`` in ``git ls-tree -z`` output."""
    wanted = name.encode()
    for record in listing.split(b"\x00"):
        head, tab, entry_name = record.partition(b"\t")
        if tab and entry_name == wanted:
            mode, _, oid = head.decode().split(" ")
            return mode, oid
    return None


def _replay(entry: _Entry) -> ManifestRevision:
    if entry.revision is not None:
        return entry.revision
    assert entry.error is not None
    raise type(entry.error)(str(entry.error))


# ---------------------------------------------------------------- helpers


def _tree_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
