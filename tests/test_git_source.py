"""The git source on the real git client: refs, manifest reading, safety, caching, credentials.

Covers ``modelrollout.gitsource.git.GitRepositorySource`` against bare repositories made in a
temporary folder with real commits (``file://``) and served by ``git http-backend`` on
127.0.0.1 behind a token: branch, tag (light and annotated) and commit refs; author and
commit time; the manifest path (``..``, absolute, symlinks, submodules, directories, missing
files, huge blobs); the polling debounce and ``invalidate``; force-pushed history; the cache
size bound; the HTTPS token (works, never in argv, logs, messages or on disk, never sent to
another host after a redirect); the SSH key file (0600, removed after the fetch, named in
``GIT_SSH_COMMAND`` with strict host checking) with a stand-in ``ssh`` program, since no sshd
is installed here; and the timeout that kills git's whole process group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitrepos import FakeClock, GitHttpServer, Origin, git
from modelrollout import api
from modelrollout.errors import SourceError
from modelrollout.gitsource.base import GitCredentials, GitSourceError, ManifestError
from modelrollout.gitsource.git import GitRepositorySource

MANIFEST = "models/fraud.yaml"
TOKEN = "glpat-Sup3rS3cretT0ken-DoNotLeak"
USERNAME = "x-access-token"


def manifest(version: int, **extra: str) -> str:
    lines = [f"modelUri: models:/fraud/{version}"] + [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def spec(url: str, ref: str = "main", path: str = MANIFEST, interval: str = "1m") -> api.GitSource:
    return api.GitSource(repository=url, ref=ref, path=path, interval=interval)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    repo = Origin(tmp_path / "server")
    repo.commit({MANIFEST: manifest(1), "README.md": "models\n"}, "first model")
    return repo


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source(tmp_path: Path, clock: FakeClock) -> GitRepositorySource:
    return GitRepositorySource(tmp_path / "cache", clock=clock, timeout_seconds=30)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    root = tmp_path_factory.mktemp("http-repos")
    repo = Origin(root, "models.git")
    repo.commit({MANIFEST: manifest(5, notes="over https")}, "https model")
    server = GitHttpServer(root, USERNAME, TOKEN).start()
    yield server
    server.stop()


# ---------------------------------------------------------------- refs and reading


@pytest.mark.asyncio
async def test_a_branch_gives_its_tip_with_author_and_commit_time(
    origin: Origin, source: GitRepositorySource
) -> None:
    commit = origin.commit(
        {MANIFEST: manifest(2, notes="better recall", approvedBy="[bob, carol]")},
        "fraud 2",
        when="2026-03-04T10:20:30+02:00",
    )

    revision = await source.fetch(spec(origin.url))

    assert revision.model_uri == "models:/fraud/2"
    assert revision.commit == commit
    assert revision.author == "Alice Example <alice@example.com>"
    assert revision.committed_at == "2026-03-04T08:20:30Z"
    assert revision.notes == "better recall"
    assert revision.approved_by == ("bob", "carol")
    assert revision.signer is None


@pytest.mark.asyncio
@pytest.mark.parametrize("annotated", [False, True])
async def test_a_tag_gives_the_commit_it_names(
    origin: Origin, source: GitRepositorySource, annotated: bool
) -> None:
    tagged = origin.commit({MANIFEST: manifest(3)}, "fraud 3")
    origin.tag("v3", annotated=annotated)
    origin.commit({MANIFEST: manifest(4)}, "fraud 4")

    revision = await source.fetch(spec(origin.url, ref="v3"))

    assert (revision.model_uri, revision.commit) == ("models:/fraud/3", tagged)


@pytest.mark.asyncio
async def test_a_full_commit_id_gives_that_commit_even_when_the_branch_moved_on(
    origin: Origin, source: GitRepositorySource
) -> None:
    old = origin.commit({MANIFEST: manifest(3)}, "fraud 3")
    origin.commit({MANIFEST: manifest(4)}, "fraud 4")

    revision = await source.fetch(spec(origin.url, ref=old))

    assert (revision.model_uri, revision.commit) == ("models:/fraud/3", old)


@pytest.mark.asyncio
async def test_a_full_ref_name_and_dot_segments_in_the_path_work(
    origin: Origin, source: GitRepositorySource
) -> None:
    revision = await source.fetch(
        spec(origin.url, ref="refs/heads/main", path="./models//fraud.yaml")
    )
    assert revision.model_uri == "models:/fraud/1"


@pytest.mark.asyncio
async def test_an_unknown_ref_says_so(origin: Origin, source: GitRepositorySource) -> None:
    with pytest.raises(GitSourceError, match=r"no such branch or tag"):
        await source.fetch(spec(origin.url, ref="release"))


@pytest.mark.asyncio
async def test_an_invalid_manifest_in_git_is_a_manifest_error(
    origin: Origin, source: GitRepositorySource
) -> None:
    origin.commit({MANIFEST: "modelUri: models:/fraud/2\nimage: evil\n"})
    with pytest.raises(ManifestError, match=r"unknown key 'image'"):
        await source.fetch(spec(origin.url))


# ---------------------------------------------------------------- the manifest path


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../x.yaml", "must not contain '..'"),
        ("models/../../x.yaml", "must not contain '..'"),
        ("/etc/passwd", "is absolute"),
        ("", "empty"),
        ("./", "names no file"),
        ("models/\nfraud.yaml", "control characters"),
    ],
)
async def test_a_path_outside_the_repository_is_refused_before_git_runs(
    origin: Origin, tmp_path: Path, path: str, words: str
) -> None:
    source = GitRepositorySource(tmp_path / "cache", git=str(tmp_path / "no-such-git"))
    with pytest.raises(GitSourceError, match=words):
        await source.fetch(spec(origin.url, path=path))


@pytest.mark.asyncio
async def test_a_symlink_to_outside_the_repository_is_refused(
    origin: Origin, source: GitRepositorySource, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.yaml"
    secret.write_text(manifest(666))
    origin.symlink("models/link.yaml", str(secret))
    origin.symlink("models/up.yaml", "../../outside.yaml")

    for name in ("models/link.yaml", "models/up.yaml"):
        with pytest.raises(GitSourceError, match=r"is a symbolic link"):
            await source.fetch(spec(origin.url, path=name, interval="0s"))


@pytest.mark.asyncio
async def test_a_symlinked_directory_on_the_path_is_refused(
    origin: Origin, source: GitRepositorySource
) -> None:
    origin.symlink("linked", "models")
    with pytest.raises(GitSourceError, match=r"'linked' is a symbolic link"):
        await source.fetch(spec(origin.url, path="linked/fraud.yaml"))


@pytest.mark.asyncio
async def test_a_submodule_entry_is_refused(origin: Origin, source: GitRepositorySource) -> None:
    some_commit = git("rev-parse", "HEAD", cwd=origin.work)
    origin.gitlink("models/vendored", some_commit)

    with pytest.raises(GitSourceError, match=r"'models/vendored' is a submodule"):
        await source.fetch(spec(origin.url, path="models/vendored", interval="0s"))
    with pytest.raises(GitSourceError, match=r"'models/vendored' is a submodule"):
        await source.fetch(spec(origin.url, path="models/vendored/fraud.yaml", interval="0s"))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("models/other.yaml", "'models/other.yaml' not found at commit"),
        ("nowhere/fraud.yaml", "'nowhere/fraud.yaml' not found at commit"),
        ("models", "'models' is not a regular file"),
        ("README.md/fraud.yaml", "'README.md' is not a directory"),
    ],
)
async def test_a_missing_file_or_a_directory_is_refused(
    origin: Origin, source: GitRepositorySource, path: str, words: str
) -> None:
    with pytest.raises(GitSourceError, match=words):
        await source.fetch(spec(origin.url, path=path))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("server_filters", "words"),
    [
        (False, r"'models/fraud.yaml' is 200027 bytes, above the limit of 65536"),
        (True, r"'models/fraud.yaml' is larger than the limit of 65536 bytes"),
    ],
)
async def test_a_huge_manifest_is_refused_without_being_read(
    origin: Origin, source: GitRepositorySource, server_filters: bool, words: str
) -> None:
    """A filtering server never sends the blob; without one, its size is checked first."""
    git("config", "uploadpack.allowFilter", str(server_filters).lower(), cwd=origin.bare)
    origin.commit({MANIFEST: manifest(2) + "#" * 200_000 + "\n"})

    with pytest.raises(GitSourceError, match=words):
        await source.fetch(spec(origin.url))


@pytest.mark.asyncio
async def test_a_repository_above_the_cache_limit_is_refused_and_not_kept(
    origin: Origin, tmp_path: Path
) -> None:
    origin.commit({"data/blob.bin": os.urandom(300_000)})
    source = GitRepositorySource(tmp_path / "cache", max_repository_bytes=200_000)

    with pytest.raises(GitSourceError, match=r"above the cache limit"):
        await source.fetch(spec(origin.url))

    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".work"]


# ---------------------------------------------------------------- polling and history


@pytest.mark.asyncio
async def test_polling_reuses_the_result_until_the_interval_has_passed(
    origin: Origin, source: GitRepositorySource, clock: FakeClock, tmp_path: Path
) -> None:
    first = await source.fetch(spec(origin.url, interval="30s"))
    newer = origin.commit({MANIFEST: manifest(2)})

    clock.advance(29)
    assert await source.fetch(spec(origin.url, interval="30s")) == first

    clock.advance(1)
    assert (await source.fetch(spec(origin.url, interval="30s"))).commit == newer
    caches = [p for p in (tmp_path / "cache").iterdir() if p.name != ".work"]
    assert len(caches) == 1


@pytest.mark.asyncio
async def test_a_poll_a_little_short_of_the_interval_fetches(
    origin: Origin, source: GitRepositorySource, clock: FakeClock
) -> None:
    """The pass due when the interval is up (engine.next_due) may read the clock a few ms
    sooner into its work than the pass that fetched: it still fetches, or every other poll
    would be skipped. Short intervals allow a tenth of themselves."""
    await source.fetch(spec(origin.url, interval="30s"))
    newer = origin.commit({MANIFEST: manifest(2)})
    clock.advance(30 - 0.4)
    assert (await source.fetch(spec(origin.url, interval="30s"))).commit == newer

    await source.fetch(spec(origin.url, interval="2s"))
    newest = origin.commit({MANIFEST: manifest(3)})
    clock.advance(2 - 0.3)
    assert (await source.fetch(spec(origin.url, interval="2s"))).commit != newest
    clock.advance(0.15)
    assert (await source.fetch(spec(origin.url, interval="2s"))).commit == newest


@pytest.mark.asyncio
async def test_errors_are_reused_too_so_a_broken_source_is_not_hammered(
    origin: Origin, source: GitRepositorySource, clock: FakeClock
) -> None:
    with pytest.raises(GitSourceError, match="not found"):
        await source.fetch(spec(origin.url, path="models/new.yaml"))
    origin.commit({"models/new.yaml": manifest(9)})

    with pytest.raises(GitSourceError, match="not found"):
        await source.fetch(spec(origin.url, path="models/new.yaml"))
    clock.advance(60)
    assert (await source.fetch(spec(origin.url, path="models/new.yaml"))).model_uri.endswith("/9")


@pytest.mark.asyncio
async def test_invalidate_makes_the_next_fetch_run_at_once(
    origin: Origin, source: GitRepositorySource
) -> None:
    await source.fetch(spec(origin.url, interval="1h"))
    newer = origin.commit({MANIFEST: manifest(2)})

    assert source.invalidate("file:///elsewhere/other.git") == 0
    assert (await source.fetch(spec(origin.url, interval="1h"))).commit != newer
    assert source.invalidate(origin.url.removesuffix(".git") + "/") == 1

    assert (await source.fetch(spec(origin.url, interval="1h"))).commit == newer


@pytest.mark.asyncio
async def test_a_force_pushed_unrelated_history_is_followed(
    origin: Origin, source: GitRepositorySource, clock: FakeClock
) -> None:
    before = await source.fetch(spec(origin.url))
    rewritten = origin.orphan({MANIFEST: manifest(7)})
    clock.advance(60)

    after = await source.fetch(spec(origin.url))

    assert before.commit != after.commit == rewritten
    assert after.model_uri == "models:/fraud/7"


@pytest.mark.asyncio
async def test_concurrent_fetches_of_one_repository_take_turns(
    origin: Origin, source: GitRepositorySource
) -> None:
    tagged = origin.commit({MANIFEST: manifest(3)})
    origin.tag("v3")
    tip = origin.commit({MANIFEST: manifest(4)})

    results = await asyncio.gather(
        *(source.fetch(spec(origin.url, ref=ref)) for ref in ("v3", "main", "v3", "main"))
    )

    assert [r.commit for r in results] == [tagged, tip, tagged, tip]


# ---------------------------------------------------------------- inputs git must not see


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "ref", "words"),
    [
        ("--upload-pack=touch%20/tmp/pwned", "main", "must not start with '-'"),
        ("ext::sh -c touch% /tmp/pwned", "main", "empty, too long or has whitespace"),
        ("ext::sh", "main", "protocol 'ext' is not allowed"),
        ("fd::17", "main", "protocol 'fd' is not allowed"),
        ("https://bob:hunter2@git.example.com/m.git", "main", "carries a password"),
        ("file:///tmp/x.git", "--upload-pack=evil", "is not a branch, tag or full commit id"),
        ("file:///tmp/x.git", "main..other", "is not a branch, tag or full commit id"),
        ("file:///tmp/x.git", "main:refs/heads/x", "is not a branch, tag or full commit id"),
        ("file:///tmp/x.git", "HEAD@{1}", "is not a branch, tag or full commit id"),
    ],
)
async def test_dangerous_urls_and_refs_never_reach_git(
    tmp_path: Path, url: str, ref: str, words: str
) -> None:
    source = GitRepositorySource(tmp_path / "cache", git=str(tmp_path / "no-such-git"))
    with pytest.raises(GitSourceError, match=words) as caught:
        await source.fetch(spec(url, ref=ref))
    assert "hunter2" not in str(caught.value)


@pytest.mark.asyncio
async def test_protocols_can_be_narrowed(origin: Origin, tmp_path: Path) -> None:
    source = GitRepositorySource(tmp_path / "cache", allowed_protocols=("https", "ssh"))
    with pytest.raises(GitSourceError, match=r"protocol 'file' is not allowed"):
        await source.fetch(spec(origin.url))


# ---------------------------------------------------------------- https token


def recording_git(tmp_path: Path) -> tuple[str, Path]:
    """A ``git`` that appends its argv to a file, then runs the real git."""
    real = shutil.which("git")
    assert real is not None
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "recording-git"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o700)
    return str(wrapper), log


def leaks(text: str) -> bool:
    return TOKEN in text or "S3cretT0ken" in text


@pytest.mark.asyncio
async def test_the_token_fetches_over_http_and_never_shows(
    http_server: GitHttpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrapper, argv_log = recording_git(tmp_path)
    source = GitRepositorySource(tmp_path / "cache", git=wrapper)
    credentials = GitCredentials(token=TOKEN)

    revision = await source.fetch(spec(http_server.url("models.git")), credentials)

    assert (revision.model_uri, revision.notes) == ("models:/fraud/5", "over https")
    assert any(seen.authorization for seen in http_server.seen)
    assert not leaks(argv_log.read_text())
    assert not leaks(caplog.text)
    assert not leaks(repr(credentials))
    for path in (tmp_path / "cache").rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "credentials",
    [None, GitCredentials(token="wrong-" + TOKEN), GitCredentials(token=TOKEN, username="bob")],
)
async def test_a_missing_or_wrong_token_is_an_authentication_error_without_the_token(
    http_server: GitHttpServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    credentials: GitCredentials | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    source = GitRepositorySource(tmp_path / "cache")
    with pytest.raises(GitSourceError, match=r"authentication failed") as caught:
        await source.fetch(spec(http_server.url("models.git")), credentials)
    assert not leaks(str(caught.value))
    assert not leaks(caplog.text)


@pytest.mark.asyncio
async def test_an_unreachable_repository_is_a_source_error_without_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    closed = GitHttpServer(tmp_path, USERNAME, TOKEN)
    url = closed.url("models.git")
    closed.stop()  # never started: the port is closed now
    source = GitRepositorySource(tmp_path / "cache")

    with pytest.raises(
        SourceError, match=r"git fetch of http://127\.0\.0\.1:\d+/models\.git"
    ) as caught:
        await source.fetch(spec(url), GitCredentials(token=TOKEN))

    assert not leaks(str(caught.value))
    assert not leaks(caplog.text)


@pytest.mark.asyncio
async def test_the_token_is_not_sent_to_another_host_after_a_redirect(
    http_server: GitHttpServer, tmp_path: Path
) -> None:
    """The credential helper answers only for the repository's own host."""
    other = GitHttpServer(http_server.state.root, USERNAME, TOKEN).start()
    redirector = GitHttpServer(tmp_path, USERNAME, TOKEN)
    redirector.state.redirect_to = f"http://localhost:{other.port}"
    redirector.start()
    try:
        source = GitRepositorySource(tmp_path / "cache")
        with pytest.raises(GitSourceError):
            await source.fetch(spec(redirector.url("models.git")), GitCredentials(token=TOKEN))
        assert other.seen, "git did follow the redirect"
        assert not any(seen.authorization for seen in other.seen + redirector.seen)
    finally:
        redirector.stop()
        other.stop()


@pytest.mark.asyncio
async def test_a_token_is_never_sent_over_plain_http_to_a_remote_host(tmp_path: Path) -> None:
    source = GitRepositorySource(tmp_path / "cache", git=str(tmp_path / "no-such-git"))
    with pytest.raises(GitSourceError, match=r"over plain http: use https") as caught:
        await source.fetch(spec("http://git.example.com/m.git"), GitCredentials(token=TOKEN))
    assert not leaks(str(caught.value))


# ---------------------------------------------------------------- ssh key


def fake_ssh(tmp_path: Path, behaviour: str = "refuse") -> tuple[Path, Path]:
    """An ``ssh`` stand-in that records how it was run and what its key file looked like."""
    log = tmp_path / "ssh.jsonl"
    program = tmp_path / "fake-ssh"
    program.write_text(
        f"""#!{sys.executable}
import json, os, stat, sys, time
args = sys.argv[1:]
key = args[args.index("-i") + 1] if "-i" in args else None
known = next(a.split("=", 1)[1] for a in args if a.startswith("UserKnownHostsFile="))
record = {{
    "args": args,
    "pid": os.getpid(),
    "key": key,
    "key_mode": stat.S_IMODE(os.stat(key).st_mode) if key else None,
    "key_dir_mode": stat.S_IMODE(os.stat(os.path.dirname(key)).st_mode) if key else None,
    "key_text": open(key).read() if key else None,
    "known_hosts": open(known).read(),
    "env": sorted(os.environ),
}}
with open({str(log)!r}, "a") as out:
    out.write(json.dumps(record) + "\\n")
if {behaviour!r} == "hang":
    time.sleep(600)
sys.stderr.write("Permission denied (publickey) with " + (record["key_text"] or "") + "\\n")
sys.exit(255)
"""
    )
    program.chmod(0o700)
    return program, log


SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDoNotARealKeyButItLooksLikeOneToTheScrubberAAAAAAAAAAAAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url", ["git@git.example.invalid:ml/models.git", "ssh://git@git.example.invalid/ml/models"]
)
async def test_the_ssh_key_is_a_private_file_only_while_git_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    program, log = fake_ssh(tmp_path)
    source = GitRepositorySource(tmp_path / "cache", ssh=str(program))
    credentials = GitCredentials(
        ssh_private_key=SSH_KEY, known_hosts="git.example.invalid ssh-ed25519 AAAAC3Nza\n"
    )

    with pytest.raises(GitSourceError, match=r"Permission denied \(publickey\)") as caught:
        await source.fetch(spec(url), credentials)

    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["key_mode"] == 0o600
    assert record["key_dir_mode"] == 0o700
    assert record["key_text"] == SSH_KEY + "\n"
    assert record["known_hosts"] == credentials.known_hosts
    assert "IdentitiesOnly=yes" in record["args"]
    assert "StrictHostKeyChecking=yes" in record["args"]
    assert "BatchMode=yes" in record["args"]
    assert not Path(record["key"]).exists()
    assert not Path(record["key"]).parent.exists()
    assert "MODELROLLOUT_GIT_TOKEN" not in record["env"]
    for text in (str(caught.value), caplog.text):
        assert "OPENSSH PRIVATE KEY" not in text
        assert "NotARealKey" not in text


@pytest.mark.asyncio
async def test_without_known_hosts_every_host_key_is_refused(tmp_path: Path) -> None:
    program, log = fake_ssh(tmp_path)
    source = GitRepositorySource(tmp_path / "cache", ssh=str(program))
    with pytest.raises(GitSourceError):
        await source.fetch(spec("git@git.example.invalid:ml/models.git"))
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["known_hosts"] == ""
    assert "StrictHostKeyChecking=yes" in record["args"]
    assert "-i" not in record["args"]


@pytest.mark.asyncio
async def test_a_git_call_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    program, log = fake_ssh(tmp_path, behaviour="hang")
    source = GitRepositorySource(tmp_path / "cache", ssh=str(program), timeout_seconds=2)

    with pytest.raises(GitSourceError, match=r"timed out after 2s"):
        await source.fetch(spec("git@git.example.invalid:ml/models.git"))

    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert not running(record["pid"])
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".work"]


def running(pid: int) -> bool:
    """True unless ``pid`` is gone or a zombie (killed, not yet reaped by its new parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
