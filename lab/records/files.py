"""Atomic file writes: a reader sees the old file or the whole new one, never a torn one.

The recipe is the usual one: write to a hidden temporary file in the same directory (so the
final rename does not cross a file system), flush and fsync it, ``os.replace`` it over the
target, then fsync the directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMPORARY_PREFIX = ".tmp-"


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` (hidden so that listings skip it).

    The original name stays at the end so that writers which pick a format from the suffix
    (matplotlib, pandas) still see ``.png`` or ``.csv``.
    """
    return path.with_name(f"{TEMPORARY_PREFIX}{secrets.token_hex(4)}-{path.name}")


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _published(path: Path | str) -> Iterator[Path]:
    """A temporary sibling to fill; it replaces ``path`` only if the ``with`` block succeeds."""
    target = Path(path)
    temporary = temporary_sibling(target)
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_writer(path: Path | str) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``path`` only when the ``with`` block succeeds."""
    with _published(path) as temporary, open(temporary, "xb") as stream:
        yield stream


def write_bytes_atomically(path: Path | str, data: bytes) -> None:
    with atomic_writer(path) as stream:
        stream.write(data)


def write_text_atomically(path: Path | str, text: str) -> None:
    write_bytes_atomically(path, text.encode("utf-8"))


def write_with_atomically(path: Path | str, write: Callable[[Path], None]) -> None:
    """For writers that insist on a path (pandas, pyarrow, matplotlib): give them a temporary one."""
    with _published(path) as temporary:
        write(temporary)
