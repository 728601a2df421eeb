"""Running git: a child process with a timeout, bounded output and a clean environment.

No shell is ever involved and no secret is ever in argv (``/proc/<pid>/cmdline`` is
world-readable). The children get a minimal environment: ``PATH``, proxies and CA bundles,
a private ``HOME``, and none of the user's or the system's git configuration. An HTTPS token
reaches git through a credential helper configured in the environment (``GIT_CONFIG_*``)
that answers only for the repository's own host; an SSH key is written 0600 into the
private directory and named in ``GIT_SSH_COMMAND`` with ``IdentitiesOnly`` and strict
host-key checking. On a timeout or too much output the whole process group is killed, so
no ``ssh`` or ``git-remote-https`` is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from modelrollout.gitsource.base import DEFAULT_TOKEN_USERNAME, GitCredentials, GitSourceError

#: Environment variables passed through to git: proxies and CA bundles, nothing else.
_PASSTHROUGH = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
#: Answers ``get`` with the token only for the expected host: a redirect to another host
#: gets nothing. The token stays in the child's environment, never in argv or on disk.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; host=; '
    'while IFS= read -r line; do case "$line" in host=*) host="${line#host=}";; esac; done; '
    'test "$host" = "$MODELROLLOUT_GIT_HOST" || exit 0; '
    "printf 'username=%s\\npassword=%s\\n' "
    '"$MODELROLLOUT_GIT_USERNAME" "$MODELROLLOUT_GIT_TOKEN"; }; f'
)
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "transfer.fsckObjects=true",
    "gc.auto=0",
    "maintenance.auto=false",
    "fetch.writeCommitGraph=false",
    "protocol.version=2",
)
MAX_OUTPUT = 16 * 1024 * 1024


class GitCommandError(Exception):
    """A git call failed; ``stderr`` is git's own message (scrub it before it leaves)."""

    def __init__(self, stderr: str, timed_out: bool = False) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.timed_out = timed_out


class GitRunner:
    """The ``git`` binary with fixed safe settings and one timeout for every call."""

    def __init__(self, git: str, timeout_seconds: float) -> None:
        self._git = git
        self._timeout = timeout_seconds

    async def run(
        self,
        args: list[str],
        repo_dir: Path | None,
        env: Mapping[str, str],
        max_output: int = MAX_OUTPUT,
    ) -> bytes:
        """Run git with a timeout and bounded output; kill its process group on either limit."""
        command = [self._git]
        for setting in _SAFE_CONFIG:
            command += ["-c", setting]
        if repo_dir is not None:
            command += ["--git-dir", str(repo_dir)]
        command += args
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as error:
            raise GitSourceError(f"cannot run git ({self._git}): {error.strerror}") from None
        assert process.stdout is not None
        assert process.stderr is not None
        reading = asyncio.gather(
            _read_at_most(process.stdout, max_output, process.pid),
            _read_at_most(process.stderr, 64 * 1024, process.pid),
            process.wait(),
        )
        try:
            (out, out_overflow), (err, _), returncode = await asyncio.wait_for(
                reading, self._timeout
            )
        except TimeoutError:
            # the group leader is not reaped yet, so its group id still names our processes
            _kill_group(process.pid)
            await process.wait()
            raise GitCommandError(
                f"git {_subcommand(args)} timed out after {self._timeout:g}s", timed_out=True
            ) from None
        if out_overflow:
            raise GitCommandError(f"git {_subcommand(args)} printed more than {max_output} bytes")
        if returncode != 0:
            raise GitCommandError(err.decode("utf-8", "replace"))
        return out


class ChildEnvironments:
    """The child environments: ``local`` for reading the cache, ``remote`` for fetching."""

    def __init__(
        self,
        work: Path,
        credentials: GitCredentials,
        url: str,
        ssh: str,
        protocols: tuple[str, ...],
    ) -> None:
        base = {name: os.environ[name] for name in _PASSTHROUGH if name in os.environ}
        base.update(
            PATH=os.environ.get("PATH", os.defpath),
            HOME=str(work),
            LC_ALL="C",
            LANG="C",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0",
        )
        # reading the cache never touches the network: a left-out blob stays missing
        self.local = {**base, "GIT_ALLOW_PROTOCOL": "none"}
        remote = {**base, "GIT_ALLOW_PROTOCOL": ":".join(protocols)}
        remote["GIT_SSH_COMMAND"] = _ssh_command(work, credentials, ssh)
        remote["GIT_SSH_VARIANT"] = "ssh"
        if credentials.token:
            remote.update(
                GIT_CONFIG_COUNT="2",
                GIT_CONFIG_KEY_0="credential.helper",
                GIT_CONFIG_VALUE_0="",
                GIT_CONFIG_KEY_1="credential.helper",
                GIT_CONFIG_VALUE_1=_CREDENTIAL_HELPER,
                MODELROLLOUT_GIT_HOST=_credential_host(url),
                MODELROLLOUT_GIT_USERNAME=credentials.username or DEFAULT_TOKEN_USERNAME,
                MODELROLLOUT_GIT_TOKEN=credentials.token,
            )
        self.remote = remote


def _ssh_command(work: Path, credentials: GitCredentials, ssh: str) -> str:
    """``GIT_SSH_COMMAND``: only the given key, only the given host keys, never a prompt."""
    known_hosts = work / "known_hosts"
    write_private(known_hosts, credentials.known_hosts or "")
    options = [
        ssh,
        "-F",
        os.devnull,
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        f"GlobalKnownHostsFile={os.devnull}",
        "-o",
        "ConnectTimeout=30",
    ]
    if credentials.ssh_private_key:
        key = work / "identity"
        text = credentials.ssh_private_key
        write_private(key, text if text.endswith("\n") else text + "\n")
        options += ["-i", str(key)]
    return " ".join(shlex.quote(part) for part in options)


async def _read_at_most(stream: asyncio.StreamReader, limit: int, pid: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes; past that, kill the process group and say there was more."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > limit:
            _kill_group(pid)
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by this user only (0600) and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)


def _credential_host(url: str) -> str:
    """The ``host`` git puts in a credential request: host[:port], no user."""
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2]


def _subcommand(args: list[str]) -> str:
    """``verify-commit`` in ``["-c", "gpg.format=ssh", "verify-commit", …]``."""
    options = iter(args)
    for arg in options:
        if arg == "-c":
            next(options, None)
        elif not arg.startswith("-"):
            return arg
    return "git"
