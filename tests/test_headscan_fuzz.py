"""benchmarks/fuzz_headscan.py: the C head scanner fuzzed with ASan against llhttp.

The oracle is checked on its own (each way a scanner can be wrong is caught, and every input
of the repository's corpus passes with the real scanner); then a short coverage-guided run
over the instrumented build, and one over a copy of _headscan.c with a planted bug, which
must fail. The runs need clang and atheris (scripts/setup.sh --system installs both).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lab.http.connection import scan_head

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "fuzz_headscan.py"
HEAD = b"GET /users/42?x=1 HTTP/1.1\r\nHost: t\r\nX-Id: 7\r\n\r\n"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_headscan", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_headscan = _script()
LIMIT = fuzz_headscan.SEED_LIMIT.to_bytes(2, "big")


def test_every_corpus_input_agrees_with_llhttp() -> None:
    corpus = sorted(fuzz_headscan.CORPUS.iterdir())
    assert len(corpus) >= 50
    assert sum(path.stat().st_size for path in corpus) < 300_000  # it lives in the repository
    accepted = 0
    connections = fuzz_headscan.Connections()
    for path in corpus:
        data = path.read_bytes()
        fuzz_headscan.check(scan_head, data)
        connections.check(scan_head, data)
        accepted += scan_head(data[2:], 0, len(data) - 2, int.from_bytes(data[:2], "big")) is not None
    assert accepted >= 5  # the oracle's comparison ran, not only its "left to llhttp" exit


def _wrong(change: Callable[[Any, bytes], Any]) -> Callable[..., Any]:
    def scanner(buffer: Any, start: int, end: int, limit: int) -> Any:
        return change(scan_head(buffer, start, end, limit), bytes(buffer)[start:end])
    return scanner


def _past_end(buffer: Any, start: int, end: int, limit: int) -> Any:
    return scan_head(buffer, start, len(buffer), limit)


def _no_limit(buffer: Any, start: int, end: int, limit: int) -> Any:
    return scan_head(buffer, start, end, 1 << 20)


@pytest.mark.parametrize("scanner, data", [
    (_wrong(lambda result, head: result and (result[0], result[1], "/other", *result[3:])), HEAD),
    (_wrong(lambda result, head: result and (*result[:4], result[4][:-1])), HEAD),
    (_wrong(lambda result, head: result and (result[0] - 1, *result[1:])), HEAD),
    (_wrong(lambda result, head: (len(head), "GET", "/fast", "", [(b"Host", b"t")])),
     LIMIT + b"GET /fast HTTP/1.0\r\nHost: t\r\n\r\n"),
    (_wrong(lambda result, head: (len(head), "GET", "/fast", "", [(b"Host", b"t")])),
     LIMIT + b"GET /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
    (_past_end, LIMIT + HEAD[:-2]),  # the head ends only in the bytes after ``end``
    (_no_limit, b"\x00\x10" + HEAD),  # 16 counted bytes: over the limit
], ids=["path", "headers", "offset", "http10", "body", "reads-past-end", "over-limit"])
def test_the_oracle_catches_a_scanner_that_is_wrong(scanner: Callable[..., Any], data: bytes) -> None:
    if data is HEAD:
        data = LIMIT + HEAD
    with pytest.raises(fuzz_headscan.Disagreement):
        fuzz_headscan.check(scanner, data)


def test_the_connection_differential_catches_a_scanner_that_is_wrong() -> None:
    # Each request comes back as /fast's answer: llhttp's reading, with the scanner off,
    # answers the user route instead.
    def everything_is_fast(buffer: Any, start: int, end: int, limit: int) -> Any:
        result = scan_head(buffer, start, end, limit)
        return result and (result[0], result[1], "/fast", "", result[4])

    connections = fuzz_headscan.Connections()
    connections.check(scan_head, LIMIT + HEAD)  # the real scanner agrees
    with pytest.raises(fuzz_headscan.Disagreement, match="with the scanner"):
        connections.check(everything_is_fast, LIMIT + HEAD)


def test_a_bad_minutes_value_is_one_line_naming_the_flag() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "0"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--minutes must be in (0, 1440]" in done.stderr and "Traceback" not in done.stderr


needs_tools = pytest.mark.skipif(fuzz_headscan.missing_tools() is not None,
                                 reason=f"cannot fuzz here: {fuzz_headscan.missing_tools()}")


def _fuzz(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--no-save", *arguments], capture_output=True,
                          text=True, timeout=180, check=False)


@needs_tools
def test_a_short_run_finds_no_crash_and_no_disagreement() -> None:
    done = _fuzz("--minutes", "0.4")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no crash, no disagreement with llhttp" in done.stdout
    figures = fuzz_headscan.SUMMARY + r" ([\d,]+) inputs in \d+ s, cov: (\d+) ft: (\d+)"
    import re

    found = re.search(figures, done.stdout)
    assert found is not None, done.stdout
    inputs, cov, features = int(found.group(1).replace(",", "")), int(found.group(2)), int(found.group(3))
    assert inputs > 1000 and cov > 50 and features >= cov


@needs_tools
def test_a_run_over_a_scanner_with_a_planted_bug_fails(tmp_path: Path) -> None:
    # One byte read past the target's end: within a bytes object it would read the NUL that
    # ends every one, unseen; over an exactly sized buffer ASan reports it.
    source = (ROOT / "lab" / "http" / "_headscan.c").read_text()
    planted = source.replace("while (p < stop && is_target_char[*p]) {",
                             "while (p <= stop && is_target_char[*p]) {")
    assert planted != source
    (tmp_path / "_headscan.c").write_text(planted)
    done = _fuzz("--minutes", "0.5", "--source", str(tmp_path / "_headscan.c"))
    assert done.returncode == 1, done.stdout[-3000:]
    assert "asan=True" in done.stdout and "heap-buffer-overflow" in done.stdout
