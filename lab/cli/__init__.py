"""``python -m lab COMMAND``: one sub-command per concern, each defined in its own module.

Every module listed in ``COMMAND_MODULES`` has ``register(subparsers)``, which adds its
sub-commands and sets ``run`` (a function of the parsed arguments returning an exit code).
Only the module of the command being run is imported, so ``python -m lab serve`` loads the
server and not pandas, matplotlib or the records.

A user's mistake is one line on stderr that names the flag as they typed it (argparse's
exit status 2), never a traceback, and not the 14 lines of a sub-command's usage above it:
the line says where the options are listed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from lab.cli import mistakes
from lab.cli.text import printable
from lab.errors import ConfigError, LabError

# module -> the sub-commands it registers
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "lab.cli.serve": ("serve",),
    "lab.cli.bench": ("bench",),
    "lab.cli.records": ("runs", "show", "export", "plot", "compare"),
    "lab.cli.report": ("report",),
    "lab.cli.experiments": ("sweep", "capacity"),
    "lab.cli.path": ("path",),
}


# What `python -m lab --help` says: written for someone who has not read the code.
DESCRIPTION = """\
Latency Lab: a tunable HTTP/1.1 server, a load generator whose figures can be trusted
(coordinated omission corrected, every request timed), and records of every run to list,
export, plot and compare."""
EPILOG = """\
start here:
  python -m lab serve                                    a server on http://127.0.0.1:8080
  python -m lab bench http://127.0.0.1:8080/fast -d 5s   load it, as wrk does (-R 2000: as wrk2)
  python -m lab bench URL --save --name baseline         keep the run: then runs, show, plot
  python -m lab sweep /fast --knob nodelay=on,off        does a knob change latency, really?

`python -m lab COMMAND --help` lists a command's flags, with their ranges and defaults.
"""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a mistake is reported in one line rather than after the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {mistakes.explained(message)} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone when it is known, else for every command."""
    parser = OneLineErrorParser(prog="python -m lab", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=OneLineErrorParser)
    owners = [module for module, commands in COMMAND_MODULES.items() if command in commands]
    for module_name in owners or COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv``: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-command's own parser (its usage is the one a user needs to see)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            chosen: argparse.ArgumentParser = action.choices[command]
            return chosen
    return parser


def name_of_flag(parser: argparse.ArgumentParser, option: str) -> str:
    """A setting's name as the user typed it: ``connections`` -> ``--connections``."""
    for action in parser._actions:
        if action.dest == option:
            long_forms = [text for text in action.option_strings if text.startswith("--")]
            if long_forms:
                return long_forms[0]
            return action.metavar if isinstance(action.metavar, str) else option
    return option


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(chosen_command(words))
    arguments, unknown = parser.parse_known_args(words)
    own = command_parser(parser, arguments.command)
    if unknown:
        own.error(mistakes.unrecognized(own, words, unknown))
    try:
        return int(arguments.run(arguments) or 0)
    except ConfigError as error:
        # the flag and what it allows; exit 2
        error = mistakes.in_cli_words(error)
        own.error(printable(f"{name_of_flag(own, error.option)}: {error.message}"))
    except LabError as error:
        print(printable(f"lab: {error}"), file=sys.stderr)
        return 1
    except OSError as error:  # a file system refusing: one line, not a traceback
        print(printable(f"lab: {error}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
