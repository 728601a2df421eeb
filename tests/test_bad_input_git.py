"""The bad-input corpus for git: manifests, manifest paths, and commits that are not trusted.

Starting point: fraud v1 stable and serving alone (``tests/bad_inputs.Bench.at_rest``); the
rollout is then pointed at a manifest in git that names v2, spoiled one way or another. Each
input goes through what kube-apiserver does with the CRD (``tests/bad_inputs.admit``), then
one full engine pass. The pass must write nothing to the InferenceService, keep v1 as the
stable model, and give a SourceReady condition with the reason (SourceError,
SourceUntrusted) or InvalidSpec, and a warning event.

- Hypothesis, with the manifest bytes handed to the parser the real git source uses: above the
  64 KiB limit, alias bombs ("billion laughs"), deep nesting, ``!!python/object`` and other
  tags, several documents, roots that are no mapping, keys twice, unknown keys, a modelUri of
  the wrong type or form, bytes that are not UTF-8, and arbitrary bytes.
- Hypothesis, paths: ``..`` segments, absolute paths, ``.git/...``, encoded dots,
  backslashes, control characters; the API server refuses most, the pass the rest.
- Real git (``tests/gitrepos.Origin``, ``GitRepositorySource``): symbolic links pointing out
  of the repository (file and directory), ``.git/config``, traversal that reaches git, a huge
  manifest and an alias bomb as committed files, and under ``verify`` an unsigned commit, a
  commit signed by a key that is not allowed, and an allowed-signers Secret with no keys
  (SSH signing keys made by ``ssh-keygen``, as in tests/test_git_signatures.py).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

import ledger
from bad_inputs import (
    MANIFEST_PATH,
    Bench,
    admit,
    check_untouched,
    crd_schema,
    git_spec,
    resource,
)
from gitrepos import FakeClock, Origin
from modelrollout import api
from modelrollout.gitsource import manifest
from modelrollout.gitsource.git import GitRepositorySource

V2 = b"modelUri: models:/fraud/2\n"
SOURCE_REFUSALS = (api.Reason.SOURCE_ERROR, api.Reason.SOURCE_UNTRUSTED, api.Reason.INVALID_SPEC)


@pytest.fixture(scope="module")
def rest() -> Bench:
    """Given fraud v1 stable, serving alone, and the rollout Succeeded."""
    crd_schema(api.ROLLOUT_KIND)
    return Bench.at_rest()


def refused_pass(
    rest: Bench, spec: dict[str, Any], path: str, bench: Bench | None = None
) -> api.Reason:
    """The API server refuses ``spec`` naming ``path``, or the pass from ``rest`` (with
    ``bench``'s ports, if given) changes nothing that serves traffic and says why."""
    admission = admit(resource(api.ROLLOUT_KIND, spec))
    if admission.stored is None:
        assert admission.names(path), [(e.path, e.message) for e in admission.errors]
        spec_given = spec  # and on to the engine as written: defence in depth
    else:
        spec_given = admission.stored["spec"]
    bench = bench or rest.copy()
    bench.status = copy.deepcopy(rest.status)
    bench.generation = rest.generation
    before = copy.deepcopy(bench.status)
    result = bench.reconcile(spec_given)
    reason = check_untouched(before, bench, result)
    assert reason in SOURCE_REFUSALS, reason
    return reason


# ---------------------------------------------------------------- manifests (hypothesis)


def alias_bomb(levels: int, width: int) -> bytes:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append(f"modelUri: models:/fraud/2\nnotes: *a{levels}")
    return ("\n".join(lines) + "\n").encode()


def nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    inner = "x" if opener == "[" else "a: x"
    body = (f"{opener}a: " if opener == "{" else opener) * depth
    return f"modelUri: models:/fraud/2\nnotes: {body}{inner}{closer * depth}\n".encode()


TAGS = [
    "!!python/object/apply:os.system ['touch /tmp/pwned']",
    "!!python/object/new:subprocess.Popen [['id']]",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!str models:/fraud/2",
    "!custom models:/fraud/2",
    "!<tag:yaml.org,2002:str> models:/fraud/2",
]
SHAPES = [
    b"",
    b"~",
    b"null",
    b"42",
    b"models:/fraud/2",
    b"- modelUri: models:/fraud/2\n",
    b"[modelUri, models:/fraud/2]\n",
    b"modelUri: models:/fraud/1\nmodelUri: models:/fraud/2\n",
    b"modelUri: models:/fraud/2\n---\nmodelUri: models:/fraud/2\n",
    b"---\nmodelUri: models:/fraud/2\n...\n---\n",
    b"modeluri: models:/fraud/2\n",
    b"modelUri: models:/fraud/2\nimage: evil/backdoor\n",
    b"modelUri: [models:/fraud/2]\n",
    b"modelUri: {uri: models:/fraud/2}\n",
    b"modelUri: 2\n",
    b"modelUri: s3://models/fraud/2\n",
    b'modelUri: "models:/fraud@challenger\\n"\n',
    b"modelUri: models:/fraud/2\napprovedBy: [[alice]]\n",
    b"? [a, b]\n: models:/fraud/2\nmodelUri: models:/fraud/2\n",
    b"\xff\xfemodelUri: models:/fraud/2\n",
    b"modelUri: models:/fraud/2\nnotes: \xc3\x28\n",
    b"modelUri: 'models:/fraud/2\n",
    b"\tmodelUri: models:/fraud/2\n",
    b"modelUri: models:/fraud/2\n" + b"#" * (manifest.MAX_MANIFEST_BYTES + 1),
]
KEYS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(
    lambda k: k not in manifest.KEYS
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=8)

MANIFESTS = st.one_of(
    st.sampled_from(SHAPES),
    st.builds(alias_bomb, st.integers(1, 12), st.integers(2, 10)),
    st.builds(nested, st.integers(2, 200), st.sampled_from("[{")),
    st.sampled_from(TAGS).map(lambda tag: f"modelUri: {tag}\n".encode()),
    st.integers(manifest.MAX_MANIFEST_BYTES, 4 * manifest.MAX_MANIFEST_BYTES).map(
        lambda size: V2 + b"notes: " + b"a" * size + b"\n"
    ),
    st.dictionaries(KEYS, DOCUMENTS, min_size=1, max_size=4).map(
        lambda extra: yaml.safe_dump({"modelUri": "models:/fraud/2", **extra}).encode()
    ),
    st.binary(max_size=200),
)


@given(data=MANIFESTS)
@example(data=alias_bomb(9, 9)).via("billion laughs")
@example(data=b"modelUri: !!python/object/apply:os.system ['touch /tmp/pwned']\n")
@example(data=b'modelUri: "models:/fraud@challenger\\n"\n')
def test_a_huge_or_malicious_manifest_moves_no_traffic(rest: Bench, data: bytes) -> None:
    ledger.bad_input("huge or malicious YAML manifest")
    bench = rest.copy()
    bench.manifests.files[MANIFEST_PATH] = data

    reason = refused_pass(rest, git_spec(), "spec.model.git", bench)

    assert reason == api.Reason.SOURCE_ERROR


# ---------------------------------------------------------------- paths (hypothesis)

#: The files of the repository the path tests read from.
REAL_FILES = (MANIFEST_PATH, "fraud.yaml")
SEGMENTS = st.sampled_from(
    ["..", ".", "", "models", "fraud.yaml", ".git", "config", "HEAD", "etc", "passwd", "%2e%2e",
     "...", "..\\..", "~", "..%2f", "\x00", "fraud.yaml\n"]
)  # fmt: skip
PATHS = st.one_of(
    st.sampled_from(
        [
            "../fraud.yaml",
            "models/../../fraud.yaml",
            "/etc/passwd",
            "//etc/passwd",
            "..",
            "./..",
            "models/fraud.yaml/..",
            ".git/config",
            ".git/HEAD",
            "%2e%2e/%2e%2e/etc/passwd",
            "..\\..\\etc\\passwd",
            "C:\\Windows\\win.ini",
            "~/.ssh/id_rsa",
            "models/fraud.yaml\x00.txt",
            "models/fraud.yaml\n",
            "a" * 1025,
        ]
    ),
    st.tuples(st.booleans(), st.lists(SEGMENTS, min_size=1, max_size=6)).map(
        lambda t: ("/" if t[0] else "") + "/".join(t[1])
    ),
).filter(
    # another way to write the path of a file in the repository is no bad input
    lambda path: "/".join(p for p in path.split("/") if p not in ("", ".")) not in REAL_FILES
)


@given(path=PATHS)
@example(path="../fraud.yaml")
@example(path=".git/config")
def test_a_manifest_path_out_of_the_repository_moves_no_traffic(rest: Bench, path: str) -> None:
    ledger.bad_input("path traversal through spec.model.git.path")
    bench = rest.copy()
    for name in REAL_FILES:  # fraud.yaml: what "models/.." would reach
        bench.manifests.files[name] = V2

    refused_pass(rest, git_spec(path=path), "spec.model.git.path", bench)


# ---------------------------------------------------------------- real git

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) is not installed"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Two SSH signing keys: alice (allowed) and mallory (not): private file, public line."""
    folder = tmp_path_factory.mktemp("signing-keys")
    made = {}
    for name in ("alice", "mallory"):
        private = folder / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(private)],
            check=True,
            timeout=30,
        )
        made[name] = (private, private.with_suffix(".pub").read_text().strip())
    return made


def real_git_bench(rest: Bench, tmp_path: Path) -> Bench:
    bench = rest.copy()
    bench.git = GitRepositorySource(
        tmp_path / "cache", clock=FakeClock(), allowed_protocols=("file",)
    )
    return bench


def outside(tmp_path: Path) -> Path:
    """A file next to the repository, out of it, that names v2 (what a link would reach)."""
    target = tmp_path / "outside" / "fraud.yaml"
    target.parent.mkdir()
    target.write_bytes(V2)
    return target


PATH_CASES = {
    "symlink to a file outside": ("models/fraud.yaml", "file-link"),
    "symlink to an absolute path": ("models/fraud.yaml", "absolute-link"),
    "symlinked directory": ("linked/fraud.yaml", "dir-link"),
    ".git/config": (".git/config", None),
    "traversal that reaches git": ("models/../../outside/fraud.yaml", None),
    "encoded dots": ("models/%2e%2e/%2e%2e/outside/fraud.yaml", None),
    "backslashes": ("models\\..\\..\\outside\\fraud.yaml", None),
}


@pytest.mark.parametrize(("path", "link"), PATH_CASES.values(), ids=list(PATH_CASES))
def test_a_manifest_path_out_of_a_real_repository_moves_no_traffic(
    rest: Bench, tmp_path: Path, path: str, link: str | None
) -> None:
    ledger.bad_input("path traversal through spec.model.git.path")
    origin = Origin(tmp_path / "server")
    target = outside(tmp_path)
    origin.commit({"README": "models live in models/\n"})
    if link == "file-link":
        origin.symlink("models/fraud.yaml", "../../outside/fraud.yaml")
    elif link == "absolute-link":
        origin.symlink("models/fraud.yaml", str(target))
    elif link == "dir-link":
        origin.symlink("linked", str(target.parent))
    spec = git_spec(repository=origin.url, path=path)

    reason = refused_pass(rest, spec, "spec.model.git.path", real_git_bench(rest, tmp_path))

    assert reason in (api.Reason.SOURCE_ERROR, api.Reason.INVALID_SPEC)


MANIFEST_FILES = {
    "above 64 KiB": V2 + b"notes: " + b"a" * manifest.MAX_MANIFEST_BYTES + b"\n",
    "far above 64 KiB": V2 + b"# " + b"x" * (8 * manifest.MAX_MANIFEST_BYTES) + b"\n",
    "alias bomb": alias_bomb(9, 9),
    "python object tag": b"modelUri: !!python/object/apply:os.system ['id']\n",
    "two documents": V2 + b"---\n" + V2,
}


@pytest.mark.parametrize("data", MANIFEST_FILES.values(), ids=list(MANIFEST_FILES))
def test_a_huge_or_malicious_manifest_in_a_real_repository_moves_no_traffic(
    rest: Bench, tmp_path: Path, data: bytes
) -> None:
    ledger.bad_input("huge or malicious YAML manifest")
    origin = Origin(tmp_path / "server")
    origin.commit({MANIFEST_PATH: data})
    spec = git_spec(repository=origin.url)

    reason = refused_pass(rest, spec, "spec.model.git", real_git_bench(rest, tmp_path))

    assert reason == api.Reason.SOURCE_ERROR


SIGNATURE_CASES = ["unsigned", "signed by a key that is not allowed", "no allowed signers"]


@needs_ssh_keygen
@pytest.mark.parametrize("case", SIGNATURE_CASES)
def test_an_untrusted_commit_moves_no_traffic_when_verify_is_set(
    rest: Bench, tmp_path: Path, keys: dict[str, tuple[Path, str]], case: str
) -> None:
    ledger.bad_input("unsigned or wrongly signed commit")
    origin = Origin(tmp_path / "server")
    alice, mallory = keys["alice"], keys["mallory"]
    signer = {"unsigned": None, "signed by a key that is not allowed": mallory[0]}
    origin.commit({MANIFEST_PATH: V2}, sign_with=signer.get(case, alice[0]))
    bench = real_git_bench(rest, tmp_path)
    allowed = "" if case == "no allowed signers" else f"alice@example.com {alice[1]}\n"
    bench.secrets.data["signers"] = {"allowed_signers": allowed}
    verify = {"allowedSignersSecretRef": {"name": "signers"}}
    spec = git_spec(repository=origin.url, verify=verify)

    reason = refused_pass(rest, spec, "spec.model.git.verify", bench)

    assert reason == api.Reason.SOURCE_UNTRUSTED


@needs_ssh_keygen
def test_a_commit_signed_by_an_allowed_signer_does_move_traffic(
    rest: Bench, tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    """The control: the same set-up with a trusted commit starts the canary, so the refusals
    above are the signature check's doing."""
    origin = Origin(tmp_path / "server")
    origin.commit({MANIFEST_PATH: V2}, sign_with=keys["alice"][0])
    bench = real_git_bench(rest, tmp_path)
    bench.secrets.data["signers"] = {"allowed_signers": f"alice@example.com {keys['alice'][1]}\n"}
    verify = {"allowedSignersSecretRef": {"name": "signers"}}

    bench.reconcile(git_spec(repository=origin.url, verify=verify))

    assert bench.router.writes == [("set_weight", "s3://models/fraud/2", 10)]
    assert re.fullmatch("[0-9a-f]{40}", bench.status["canary"]["gitCommit"])
