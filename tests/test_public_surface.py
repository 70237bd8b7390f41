"""What a user sees, pinned: ``bitloot_lite.__all__``, the documented module paths and
every command's ``--help``, byte for byte (tests/surface/). A reorganisation of the
package must leave these as they are; a deliberate change to the CLI or the public API
rewrites them with ``BITLOOT_WRITE_SURFACE=1 pytest tests/test_public_surface.py`` and
shows in the diff of tests/surface/."""

import importlib
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import bitloot_lite
from bitloot_lite.cli import cli

SURFACE = Path(__file__).resolve().parent / "surface"
WRITE = os.environ.get("BITLOOT_WRITE_SURFACE") == "1"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _commands(cli)


def _pinned(name: str, text: str) -> None:
    path = SURFACE / name
    if WRITE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: BITLOOT_WRITE_SURFACE=1 writes it"
    assert text == path.read_text(), f"{name} changed (see the diff against {path})"


def test_the_public_names_are_pinned():
    _pinned("all.txt", "\n".join(bitloot_lite.__all__) + "\n")


@pytest.mark.parametrize("module", ["bitloot_lite.models", "bitloot_lite.migrating",
                                    "bitloot_lite.cli", "bitloot_lite.migrations"])
def test_the_documented_module_paths_import(module):
    assert importlib.import_module(module).__name__ == module


def test_the_commands_are_pinned():
    _pinned("commands.txt", "\n".join(" ".join(path) or "(bitloot-lite)" for path in COMMANDS)
            + "\n")


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "bitloot-lite")
def test_every_help_is_pinned(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="bitloot-lite",
                                terminal_width=100)
    assert result.exit_code == 0, result.output
    _pinned(f"help/{'-'.join(path) or 'bitloot-lite'}.txt", result.output)
