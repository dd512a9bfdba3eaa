"""The CLI's contract over every command and subcommand: ``--help`` shows an example, and a command that
reports a result offers ``--json`` (groups only list their commands). New commands are covered without being
listed here."""

from __future__ import annotations

from typing import Iterator, List, Tuple

import click
import pytest
from click.testing import CliRunner

from swaprace.cli import main

#: Commands without --json, and why.
NO_JSON = {
    ("vm", "run"): "its stdout is the guest command's own output, streamed as it comes",
    ("vm", "shell"): "an interactive shell on this terminal: there is no result to report",
}


def _walk(command: click.Command, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, path + (name,))


COMMANDS: List[Tuple[Tuple[str, ...], click.Command]] = list(_walk(main))


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(("swaprace",) + p))
def test_help_shows_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "swaprace " in result.output.split("Example", 1)[1]


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if not isinstance(c, click.Group)],
                         ids=lambda p: " ".join(("swaprace",) + p))
def test_a_command_with_a_result_has_json(path):
    command = dict(COMMANDS)[path]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert ("--json" in options) != (path in NO_JSON), NO_JSON.get(path, "no --json option")


def test_exceptions_name_real_commands():
    assert set(NO_JSON) <= {p for p, _ in COMMANDS}
