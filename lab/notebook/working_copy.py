"""Working copies of the shipped notebooks: where JupyterLab saves what a session did.

JupyterLab autosaves every output into the notebook it has open. Opened from ``notebooks/``,
one session leaves the repository modified, and every record made after it says "(uncommitted
changes)" about code that did not change. ``scripts/open-lab.sh`` therefore opens copies in a
git-ignored folder (``my-notebooks/``): the outputs stay there for the reader to keep (stripping
them on save would throw away what a reader may want to look at again), the shipped notebooks
stay clean, and a record's provenance stays true.

    python -m lab.notebook.working_copy notebooks my-notebooks

A notebook is copied once. A shipped notebook that changed after its copy was made (a ``git
pull``) is never copied over the reader's work: a line says so, and how to get the new one.
The copy remembers what it was copied from in its metadata (``lab.copied_from_sha256``), which
JupyterLab keeps when it saves.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

METADATA_KEY = "lab"
ORIGIN_KEY = "copied_from_sha256"


def prepare(shipped: Path, copies: Path) -> list[str]:
    """Copy each ``shipped/*.ipynb`` (and each module beside them, ``*.py``) missing from
    ``copies``; return a line per file copied and per notebook whose shipped version changed
    since its copy was made."""
    copies.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for source in sorted(shipped.glob("*.ipynb")):
        target = copies / source.name
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if not target.exists():
            _copy(source, target, digest)
            lines.append(f"copied {source} to {target}")
        elif _origin(target) not in (digest, None):
            lines.append(f"{source} changed since {target} was copied from it; rename or delete "
                         "your copy to get the new one")
    for source in sorted(shipped.glob("*.py")):
        # A module a notebook imports from its own folder (notebook 16's your_app.py): beside
        # the copies too, once -- the reader may make it their own app.
        target = copies / source.name
        if not target.exists():
            target.write_bytes(source.read_bytes())
            lines.append(f"copied {source} to {target}")
    return lines


def _copy(source: Path, target: Path, digest: str) -> None:
    # The notebook's JSON as it is, one key added: a copy, not a re-written notebook.
    notebook = json.loads(source.read_text(encoding="utf-8"))
    notebook.setdefault("metadata", {}).setdefault(METADATA_KEY, {})[ORIGIN_KEY] = digest
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    temporary.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(target)  # whole or not at all: an interrupted copy is no half notebook


def _origin(copy: Path) -> str | None:
    try:
        notebook: Any = json.loads(copy.read_text(encoding="utf-8"))
        origin = notebook["metadata"][METADATA_KEY][ORIGIN_KEY]
    except (OSError, ValueError, KeyError, TypeError):  # not one of our copies: leave it be
        return None
    return origin if isinstance(origin, str) else None


def main(arguments: list[str]) -> int:
    if len(arguments) != 2:
        print("usage: python -m lab.notebook.working_copy SHIPPED_FOLDER COPIES_FOLDER", file=sys.stderr)
        return 2
    for line in prepare(Path(arguments[0]), Path(arguments[1])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
