"""``python -m lab COMMAND``: one sub-command per concern, each defined in its own module.

Every module listed in ``COMMAND_MODULES`` has ``register(subparsers)``, which adds its
sub-commands and sets ``run`` (a function of the parsed arguments returning an exit code).
Only the module of the command being run is imported, so ``python -m lab serve`` loads the
server and not pandas, matplotlib or the records.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lab.errors import ConfigError, LabError

# module -> the sub-commands it registers
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "lab.cli.serve": ("serve",),
    "lab.cli.bench": ("bench",),
    "lab.cli.records": ("runs", "show", "export", "plot", "compare"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone when it is known, else for every command."""
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    owners = [module for module, commands in COMMAND_MODULES.items() if command in commands]
    for module_name in owners or COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv``: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(chosen_command(words))
    arguments = parser.parse_args(words)
    try:
        return int(arguments.run(arguments) or 0)
    except ConfigError as error:
        parser.error(str(error))  # the usage line, then the setting and what it allows; exit 2
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
