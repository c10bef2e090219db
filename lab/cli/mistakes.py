"""A user's slip on the command line, answered in one line that says what to write instead.

argparse knows that ``--conections`` and the ``off`` of ``--nodelay off`` are not arguments,
but not what the user meant: its "unrecognized arguments: off" leaves them to find
``--no-nodelay`` in the help. The wording here is the one place those answers are made, for
every sub-command (the parser in :mod:`lab.cli` calls it).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence

from lab.addresses import RemoteTargetRefused
from lab.cli.text import printable
from lab.errors import ConfigError

# How alike a mistyped flag and a real one must be (difflib's ratio) to be offered: 0.8 takes
# --conections for --connections and --durration for --duration, not --rate for --late-after.
SIMILAR_ENOUGH = 0.8
_ON_WORDS = frozenset({"on", "true", "yes", "1"})
_OFF_WORDS = frozenset({"off", "false", "no", "0"})


def unrecognized(parser: argparse.ArgumentParser, words: Sequence[str], unknown: Sequence[str]) -> str:
    """The error for words ``parser`` did not take: the first one explained, with a fix where
    one can be guessed (a flag's near spelling, a switch given a value)."""
    first = unknown[0]
    if first.startswith("--"):
        flag = first.split("=", 1)[0]
        meant = difflib.get_close_matches(flag, _flags(parser), n=1, cutoff=SIMILAR_ENOUGH)
        if meant:
            return printable(f"unrecognized arguments: {flag} (did you mean {meant[0]}?)")
    else:
        switch = _switch_before(parser, words, first)
        if switch is not None:
            return _switch_takes_no_value(switch, first)
    return printable(f"unrecognized arguments: {' '.join(unknown)}")


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [text for action in parser._actions for text in action.option_strings if text.startswith("--")]


def _switch_before(parser: argparse.ArgumentParser, words: Sequence[str], word: str) -> str | None:
    """The on/off flag written just before ``word`` (``--nodelay`` of ``--nodelay off``)."""
    switches = {text for action in parser._actions
                if isinstance(action, argparse.BooleanOptionalAction) for text in action.option_strings}
    for index, candidate in enumerate(words[1:], start=1):
        if candidate == word and words[index - 1] in switches:
            return words[index - 1]
    return None


def _switch_takes_no_value(switch: str, value: str) -> str:
    name = switch.removeprefix("--").removeprefix("no-")
    on, off = f"--{name}", f"--no-{name}"
    if value.lower() in _OFF_WORDS:
        return printable(f"{switch} takes no value: write {off} to turn it off")
    if value.lower() in _ON_WORDS:
        return printable(f"{switch} takes no value: write {on} alone to turn it on")
    return printable(f"{switch} takes no value ({on} turns it on, {off} off); "
                     f"unrecognized argument: {value}")


_EXPLICIT_VALUE = re.compile(r"argument (--[^/\s]+)(?:/\S+)?: ignored explicit argument '(.*)'")
_INVALID_CHOICE = re.compile(r"argument .+: invalid choice: '(.*)' \(choose from (.*)\)")


def explained(message: str) -> str:
    """argparse's own error, reworded where it does not say what to write (``--nodelay=off``,
    ``bnch`` for ``bench``)."""
    found = _EXPLICIT_VALUE.fullmatch(message)
    if found is not None:
        return _switch_takes_no_value(found.group(1), found.group(2))
    found = _INVALID_CHOICE.fullmatch(message)
    if found is not None:
        choices = [choice.strip().strip("'") for choice in found.group(2).split(",")]
        meant = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=SIMILAR_ENOUGH)
        if meant:
            return f"{message}; did you mean {meant[0]}?"
    return message


def in_cli_words(error: ConfigError) -> ConfigError:
    """A setting's error as the command line says it: its opt-in is a flag, not an argument."""
    if isinstance(error, RemoteTargetRefused):
        return error.opting_in("pass --allow-remote for a target you own")
    return error
