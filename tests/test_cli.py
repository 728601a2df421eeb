"""The ``modelrollout`` command: help without a command, and the demo's clear refusals."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelrollout import cli
from processes import free_base_port


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: modelrollout" in capsys.readouterr().out


def test_the_demo_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--run-dir", "--base-port", "--rps", "--keep"):
        assert option in out


def test_the_demo_on_a_taken_port_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_base_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen(1)
        code = cli.main(["demo", "--run-dir", str(tmp_path), "--base-port", str(base)])
    assert code == 1
    out = capsys.readouterr().err
    assert f"port {base + 1} on 127.0.0.1 (for mlflow) is taken" in out.replace("\n", " ")
    assert not list(tmp_path.glob("run-*/sandbox.json"))
