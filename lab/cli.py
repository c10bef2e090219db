"""``python -m lab COMMAND``: one sub-command per concern, each defined in its own module.

Every module listed in ``COMMAND_MODULES`` has ``register(subparsers)``, which adds its
sub-command and sets ``run`` (a function of the parsed arguments returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lab.options import ConfigError

COMMAND_MODULES = (
    "lab.serve_cli",
    "lab.bench_cli",
    "lab.records_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments) or 0)
    except ConfigError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
