"""The ``modelrollout`` command: subcommands that are not built yet say so and fail."""

from __future__ import annotations

import pytest

from modelrollout import cli


def test_demo_says_plainly_that_it_is_not_available_yet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["demo"]) == 2
    assert "not available yet" in capsys.readouterr().err


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: modelrollout" in capsys.readouterr().out
