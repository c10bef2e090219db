"""Coverage-guided fuzzing of the C head scanner (lab/http/_headscan.c), llhttp as the oracle.

    python benchmarks/fuzz_headscan.py                 10 minutes, new finds added to the corpus
    python benchmarks/fuzz_headscan.py --minutes 0.5 --no-save
    python benchmarks/fuzz_headscan.py --reseed        (re)write the seeds from the tests' vectors

scan_head parses untrusted bytes in C. Its contract (tests/test_headscan.py) is that wherever
it accepts a head, llhttp reads those bytes as the same request; anything else it must leave
(None); and so a connection answers any bytes exactly as it does with the scanner off. This
script builds the scanner with clang's AddressSanitizer and libFuzzer's coverage hooks
(``-fsanitize=address,fuzzer-no-link``) into a temporary folder -- never over the installed
.so -- and runs atheris on it with atheris's ASan runtime preloaded, so the mutation
is guided by the C code's branches and any out-of-bounds access stops the run. Every input is
checked as tests/test_headscan.py's two differential tests check a generated head -- the
scanner's result against llhttp's, and a connection's answers with the scanner on against
off (tests/fakes.py's ``answers``, the same helper) -- plus what a fuzzer can reach that
hypothesis's heads do not: the scanner must stop at its ``end`` (the same answer whatever
follows it), at any ``start``, and within its ``limit`` as the reader counts it.

An input is two bytes of ``limit`` (big-endian) and then the bytes to scan; for the
connection, ``limit`` is also its max_header_bytes (at least 256, the knob's minimum) and its
two low bits pick the read buffer (256, 300, 4096 or 65536 bytes, as the test's choices). The corpus lives in
tests/fuzz-corpus/headscan (seeded from the HTTP vectors the tests already have, ``--reseed``);
after a run, libFuzzer's merge adds only the inputs that reach new coverage.

Prints the inputs run, libFuzzer's coverage (``cov``: edges of the C code reached; ``ft``:
features, edges with hit counts) and every disagreement or crash; exit 1 if there was one,
2 if the tools are missing (clang: Debian's ``clang``; atheris: the dev extra).

Measured 2026-12-07, machine shared with other engineers' tests, niced: 11 minutes with
both checks, 396,172 inputs, cov 125 of 173 edges, ft 619, no crash, no disagreement (before
the connection check was added, 12 minutes ran 3,963,221 inputs to the same cov 125, ft 422,
also clean); cov was 125 after 30 s already. The edges never
reached are the module's init (it runs before fuzzing), scan_head's argument errors (bad
types and bounds: tests/test_headscan.py checks those) and the allocation-failure branches
of build_result (libFuzzer's -print_coverage=1 lists them).
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "lab" / "http" / "_headscan.c"
CORPUS = ROOT / "tests" / "fuzz-corpus" / "headscan"
DICTIONARY = ROOT / "tests" / "fuzz-corpus" / "headscan.dict"
# The test's limit (tests/test_headscan.py), the prefix of every seed.
SEED_LIMIT = 8192
# Heads longer than this add no branch of the scanner a shorter one lacks, and keep the
# corpus small enough to live in the repository.
MAX_LEN = 2048
# The tests whose raw request bytes seed the corpus.
SEED_SOURCES = ("fakes.py", "test_headscan.py", "test_server_strict.py", "test_server_bad_input.py",
                "test_http_reader.py", "test_server_http.py", "test_server_attacks.py")
# What may follow a head in the same read: the next request, or the start of one.
TAILS = (b"", b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n", b"\r\n", b"X")
SUMMARY = "fuzz_headscan:"
# The child process: where the instrumented module is, and the command that runs the child
# again (libFuzzer's merge starts its argv[0] anew, so that must be one executable).
MODULE_VARIABLE, COMMAND_VARIABLE = "FUZZ_HEADSCAN_MODULE", "FUZZ_HEADSCAN_COMMAND"


# --- the oracle ------------------------------------------------------------------------------


class Disagreement(AssertionError):
    """The scanner accepted bytes llhttp reads otherwise (or it broke its own contract)."""


def _llhttp_reads(data: bytes) -> Any:
    import httptools
    from fakes import LlhttpRecorder  # type: ignore[import-not-found]  # tests/fakes.py

    reader = LlhttpRecorder()
    try:
        reader.parser.feed_data(data)
    except httptools.HttpParserError as error:
        raise Disagreement(f"the scanner accepted {data!r}, llhttp refuses it: {error!r}") from None
    return reader


def check(scan_head: Callable[..., Any], data: bytes) -> None:
    """One fuzz input: raise Disagreement where the scanner and llhttp part ways."""
    if len(data) < 2:
        return
    limit, head = int.from_bytes(data[:2], "big"), data[2:]
    # A bytes object ends in a NUL byte that a read past the end would find, unseen; a ctypes
    # array of exactly the head's length (malloc'd, with PYTHONMALLOC=malloc) ends where
    # AddressSanitizer's red zone begins.
    exact = (ctypes.c_char * len(head)).from_buffer_copy(head)
    scanned = scan_head(exact, 0, len(head), limit)
    for tail in TAILS[1:]:
        if scan_head(head + tail, 0, len(head), limit) != scanned:
            raise Disagreement(f"the scanner read past its end: {head!r} followed by {tail!r}")
    shifted = scan_head(b"GET " + head + b"\r\n", 4, 4 + len(head), limit)
    moved = None if scanned is None else (scanned[0] + 4, *scanned[1:])
    if shifted != moved:
        raise Disagreement(f"the scanner answers {head!r} differently at start=4: {shifted!r} vs {scanned!r}")
    if scanned is None:
        return  # left to llhttp: always allowed
    next_offset, method, path, query, headers = scanned
    if not 0 < next_offset <= len(head):
        raise Disagreement(f"next offset {next_offset} outside (0, {len(head)}] for {head!r}")
    request = _llhttp_reads(head[:next_offset])
    if request.complete != 1 or _llhttp_reads(head[:next_offset - 1]).complete != 0:
        raise Disagreement(f"the scanner's head {head[:next_offset]!r} is not exactly one llhttp request")
    target_path, mark, target_query = request.url.partition(b"?")
    expected = (request.parser.get_method().decode(), target_path.decode("latin-1"),
                target_query.decode("latin-1") if mark else "", request.headers)
    if (method, path, query, headers) != expected:
        raise Disagreement(f"{head[:next_offset]!r}: scanner {(method, path, query, headers)!r}, "
                           f"llhttp {expected!r}")
    if request.parser.get_http_version() != "1.1" or not request.parser.should_keep_alive() \
            or request.parser.should_upgrade():
        raise Disagreement(f"the scanner accepted {head[:next_offset]!r}, which llhttp reads as "
                           "not a plain keep-alive HTTP/1.1 request")
    # The reader's count for max_header_bytes: the target, and name + value + 4 per header.
    counted = len(request.url) + sum(len(name) + len(value) + 4 for name, value in headers)
    if counted > limit:
        raise Disagreement(f"the scanner accepted {counted} counted bytes over its limit {limit}")


class Connections:
    """The scanner-on/off differential: a connection fed an input answers it alike either way.

    With tests/fakes.py's ``answers_of`` (its transport, its Date normalisation), but with
    one server state per read buffer, kept, and the input's header limit written into a copy
    of its settings: making a ServerConfig validates every knob through
    typing.get_type_hints, ~20 ms (2026-12-07), which at two per input left the fuzzer a few
    inputs a second.
    """

    READ_BUFFERS = (256, 300, 4096, 65536)

    def __init__(self) -> None:
        import asyncio

        import fakes  # tests/fakes.py, on the child's path

        import lab.http.connection as connection_module
        from lab.http.demo_routes import demo_router

        self.loop = asyncio.new_event_loop()
        self.fakes = fakes
        self.module: Any = connection_module  # its scan_head is switched per call
        self.router = demo_router()
        self.states: dict[int, Any] = {}

    def check(self, scan_head: Callable[..., Any], data: bytes) -> None:
        if len(data) < 2:
            return
        limit, head = int.from_bytes(data[:2], "big"), data[2:]
        knobs = (max(256, limit), self.READ_BUFFERS[limit & 3])
        scanned = self._answers(scan_head, head, knobs)
        unscanned = self._answers(None, head, knobs)
        if scanned != unscanned:
            raise Disagreement(f"{head!r} (max_header_bytes, read_buffer_bytes = {knobs}): answered "
                               f"{scanned!r} with the scanner, {unscanned!r} without")

    def _state(self, knobs: tuple[int, int]) -> Any:
        max_header_bytes, read_buffer_bytes = knobs
        state = self.states.get(read_buffer_bytes)
        if state is None:
            from lab.http.config import ServerConfig
            from lab.http.state import ServerState

            config = ServerConfig(read_buffer_bytes=read_buffer_bytes)
            state = self.states[read_buffer_bytes] = ServerState(config, self.router, self.loop)
        if state.settings.max_header_bytes != max_header_bytes:
            import copy

            settings = copy.copy(state.settings)
            # Frozen, and not validated again: 256 <= max(256, a 16-bit limit) <= the knob's
            # maximum (1 MiB), by construction.
            object.__setattr__(settings, "max_header_bytes", max_header_bytes)
            state.settings = settings
        return state

    def _answers(self, scan_head: Callable[..., Any] | None, head: bytes, knobs: tuple[int, int]) -> Any:
        import asyncio

        module = self.module
        original, module.scan_head = module.scan_head, scan_head
        connection = module.HttpConnection(self._state(knobs))
        try:
            return self.fakes.answers_of(connection, [head])
        except Exception as error:  # the same failure either way is agreement too
            return ("raised", type(error).__name__, str(error))
        finally:
            module.scan_head = original
            connection.connection_lost(None)  # leaves the kept state's set of connections
            # An async route (/delay/...) leaves a task on this loop, which never runs:
            # cancelled, so that millions of inputs do not pile them up.
            tasks = asyncio.all_tasks(self.loop)
            if tasks:
                for task in tasks:
                    task.cancel()
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


# --- the instrumented build and the run ------------------------------------------------------


def build(folder: Path, source: Path) -> Path:
    """The scanner with ASan and coverage hooks, as a module file in ``folder``."""
    target = folder / ("_headscan" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    command = ["clang", "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer",
               "-fsanitize=address,fuzzer-no-link", "-I", sysconfig.get_paths()["include"],
               str(source), "-o", str(target)]
    subprocess.run(command, check=True)
    return target


def load(path: Path) -> ModuleType:
    # The module's init function is PyInit__headscan: the name must end in _headscan.
    spec = importlib.util.spec_from_file_location("_headscan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(module_path: Path, command: str, libfuzzer_arguments: list[str]) -> None:
    """Runs inside the process that has atheris's ASan runtime preloaded."""
    import atheris  # type: ignore[import-untyped]  # ships no type hints

    scan_head = load(module_path).scan_head
    connections = Connections()

    def one_input(data: bytes) -> None:
        check(scan_head, data)
        connections.check(scan_head, data)

    atheris.Setup([command, *libfuzzer_arguments], one_input)
    atheris.Fuzz()


def missing_tools() -> str | None:
    """Why this machine cannot fuzz, or None."""
    if shutil.which("clang") is None:
        return "clang is not installed (Debian: apt-get install clang; scripts/setup.sh --system does)"
    if importlib.util.find_spec("atheris") is None:
        return "atheris is not installed (it is in the dev extra: scripts/setup.sh)"
    probe = subprocess.run(["clang", "-fsanitize=address", "-x", "c", "-", "-o", os.devnull],
                           input="int main(void) { return 0; }\n", capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        return ("clang cannot link AddressSanitizer's runtime (Debian: apt-get install "
                "libclang-rt-dev; scripts/setup.sh --system does)")
    return None


def _preload() -> str:
    import atheris

    return str(Path(atheris.path()) / "asan_with_fuzzer.so")


def _run_child(module: Path, arguments: list[str], log: Path) -> int:
    command = module.parent / "run-child"
    if not command.exists():
        command.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
        command.chmod(0o755)
    environment = dict(os.environ, LD_PRELOAD=_preload(),
                       # Python itself leaks by design at exit; only memory errors count here.
                       # Plain malloc lets ASan see each Python object's own bounds.
                       ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1",
                       PYTHONMALLOC="malloc", PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
                       **{MODULE_VARIABLE: str(module), COMMAND_VARIABLE: str(command)})
    with log.open("wb") as output:
        return subprocess.run([str(command), *arguments], env=environment, stdout=output,
                              stderr=subprocess.STDOUT, check=False).returncode


def _report(log: str) -> dict[str, Any]:
    statuses = re.findall(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", log, re.MULTILINE)
    executed = re.search(r"stat::number_of_executed_units: (\d+)", log)
    last = statuses[-1] if statuses else ("0", "0", "0")
    # The instrumented module's edges (one 8-bit counter each): what cov is out of.
    edges = re.search(r"Loaded 1 modules\s+\((\d+) inline 8-bit counters\)", log)
    return {"inputs": int(executed.group(1)) if executed else int(last[0]),
            "cov": int(last[1]), "ft": int(last[2]), "edges": int(edges.group(1)) if edges else 0,
            "disagreement": "Disagreement" in log, "asan": "ERROR: AddressSanitizer" in log}


def fuzz(minutes: float, save: bool, source: Path = SOURCE, corpus: Path = CORPUS) -> int:
    why = missing_tools()
    if why is not None:
        print(f"{SUMMARY} cannot fuzz here: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fuzz-headscan-") as scratch:
        folder = Path(scratch)
        module = build(folder, source)
        found, artifacts = folder / "found", folder / "artifacts"
        found.mkdir()
        artifacts.mkdir()
        seconds = max(1, round(minutes * 60))
        arguments = [f"-max_total_time={seconds}", f"-max_len={MAX_LEN}", "-print_final_stats=1",
                     f"-artifact_prefix={artifacts}/", "-timeout=10", f"-dict={DICTIONARY}",
                     str(found), str(corpus)]
        log = folder / "fuzz.log"
        print(f"{SUMMARY} fuzzing {source} (ASan, libFuzzer via atheris) for "
              f"{seconds} s from {len(list(corpus.iterdir()))} corpus inputs", flush=True)
        began = time.monotonic()
        code = _run_child(module, arguments, log)
        text = log.read_text(errors="replace")
        report = _report(text)
        crashes = sorted(artifacts.iterdir())
        failed = code != 0 or bool(crashes) or report["disagreement"] or report["asan"]
        print(f"{SUMMARY} {report['inputs']:,} inputs in {time.monotonic() - began:.0f} s, "
              f"cov: {report['cov']} ft: {report['ft']} ({report['cov']} of the scanner's "
              f"{report['edges']} edges), corpus +{len(list(found.iterdir()))} found this run",
              flush=True)
        if failed:
            print(f"{SUMMARY} FAILED (exit {code}): disagreement={report['disagreement']} "
                  f"asan={report['asan']}; inputs kept: {[c.name for c in crashes]}")
            for marker in ("=== Uncaught", "ERROR: AddressSanitizer", "ERROR: libFuzzer"):
                if marker in text:
                    print(text[text.index(marker):][:6000])
                    break
            else:
                print(text[-4000:])
            for crash in crashes:
                print(f"{SUMMARY} input {crash.name}: {crash.read_bytes()!r}")
                if source == SOURCE:  # kept to reproduce; a planted bug's finds are not
                    kept = ROOT / "test-output" / "fuzz-headscan" / crash.name
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(crash, kept)
            return 1
        print(f"{SUMMARY} no crash, no disagreement with llhttp")
        if save:
            before = len(list(corpus.iterdir()))
            merge = _run_child(module, ["-merge=1", f"-max_len={MAX_LEN}", str(corpus), str(found)],
                               folder / "merge.log")
            if merge != 0:
                print(f"{SUMMARY} merging into the corpus failed (exit {merge}):")
                print(((folder / "merge.log").read_text(errors="replace"))[-3000:])
                return 1
            size = sum(path.stat().st_size for path in corpus.iterdir())
            print(f"{SUMMARY} corpus {corpus}: {before} -> "
                  f"{len(list(corpus.iterdir()))} inputs ({size / 1024:.0f} KiB)")
    return 0


# --- the seeds -------------------------------------------------------------------------------


def _byte_literals(source: str) -> list[bytes]:
    """Every bytes constant in a test module, concatenations of constants included."""
    found: list[bytes] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant | ast.BinOp):
            try:
                value = ast.literal_eval(node)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, bytes):
                found.append(value)
    return found


def reseed() -> int:
    """The corpus's seeds: the raw request bytes the tests already send, at the test's limit."""
    import hashlib

    CORPUS.mkdir(parents=True, exist_ok=True)
    heads: set[bytes] = set()
    for name in SEED_SOURCES:
        for value in _byte_literals((ROOT / "tests" / name).read_text()):
            if b"HTTP/" in value and len(value) <= MAX_LEN - 2:
                heads.add(value)
    written = 0
    for head in sorted(heads):
        data = SEED_LIMIT.to_bytes(2, "big") + head
        path = CORPUS / hashlib.sha1(data).hexdigest()  # libFuzzer's own naming
        if not path.exists():
            path.write_bytes(data)
            written += 1
    print(f"{SUMMARY} {written} new seeds from {len(heads)} request vectors in tests/ -> "
          f"{CORPUS.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if MODULE_VARIABLE in os.environ:
        child(Path(os.environ[MODULE_VARIABLE]), os.environ[COMMAND_VARIABLE], arguments)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long to fuzz (default 10; fractions allowed)")
    parser.add_argument("--no-save", action="store_true",
                        help="leave the corpus as it is (the test suite's run)")
    parser.add_argument("--corpus", type=Path, default=CORPUS,
                        help="the corpus folder read and added to (default: the repository's)")
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="the C file to fuzz (default lab/http/_headscan.c; a changed copy "
                             "checks that the fuzzer finds what it should)")
    parser.add_argument("--reseed", action="store_true",
                        help="write the seeds from the tests' request vectors and stop")
    options = parser.parse_args(arguments)
    if not 0 < options.minutes <= 24 * 60:
        parser.error(f"--minutes must be in (0, 1440], not {options.minutes:g}")
    for name in ("corpus", "source"):
        if not getattr(options, name).exists():
            parser.error(f"--{name} {getattr(options, name)} does not exist")
    if options.reseed:
        return reseed()
    return fuzz(options.minutes, save=not options.no_save, source=options.source.resolve(),
                corpus=options.corpus.resolve())


if __name__ == "__main__":
    sys.exit(main())
