"""The layout is the architecture: each part imports only the parts below it.

The import graph is read from the source (every ``import`` statement, including those inside
functions, but not those under ``if TYPE_CHECKING:``), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lab

PACKAGE = Path(lab.__file__).resolve().parent
FOUNDATION = {"lab.errors", "lab.units", "lab.options", "lab.addresses", "lab.resources", "lab.tls"}

# part -> the parts it may import (besides itself). The server side (http, server) and the
# load side (engine, loadgen) never import each other; storage never imports presentation.
ALLOWED: dict[str, set[str]] = {
    "lab.errors": set(),
    "lab.units": set(),
    "lab.options": {"lab.errors"},
    "lab.addresses": {"lab.errors"},
    # the lab's own processes, and the hiccup meter that times their loops in nanoseconds
    "lab.resources": {"lab.errors", "lab.units"},
    # TLS contexts and the lab's certificates: the server side and the load side both use them
    "lab.tls": {"lab.errors"},
    "lab.measure": {"lab.errors", "lab.units"},
    # the emulated network path sits under the server (which listens behind it); the load
    # side reaches it only through lab.addresses' routing-table check, never by import
    "lab.netpath": FOUNDATION,
    "lab.http": FOUNDATION,
    "lab.server": FOUNDATION | {"lab.http", "lab.netpath"},
    "lab.engine": FOUNDATION | {"lab.measure"},
    "lab.loadgen": FOUNDATION | {"lab.measure", "lab.engine"},
    "lab.records": FOUNDATION | {"lab.measure", "lab.engine"},
    "lab.peers": FOUNDATION,
    "lab.notebook": FOUNDATION | {"lab.measure", "lab.netpath", "lab.http", "lab.server", "lab.engine",
                                  "lab.loadgen", "lab.records", "lab.peers"},
    # experiments drive a server and the generator together, and keep their runs as records
    "lab.experiments": FOUNDATION | {"lab.measure", "lab.netpath", "lab.http", "lab.server", "lab.engine",
                                     "lab.loadgen", "lab.records", "lab.peers"},
    "lab.cli": FOUNDATION | {"lab.measure", "lab.netpath", "lab.http", "lab.server", "lab.engine",
                             "lab.loadgen", "lab.records", "lab.peers", "lab.experiments"},
    "lab.__main__": {"lab.cli"},
}
PRESENTATION = {"lab.records.compare", "lab.records.plots", "lab.records.html_report"}
MAX_TOP_LEVEL_MODULES = 10


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """``lab.http.core`` -> ``lab.http``; ``lab.server`` -> ``lab.server``."""
    return ".".join(module.split(".")[:2])


def is_module(dotted: str) -> bool:
    return PACKAGE.parent.joinpath(*dotted.split(".")).with_suffix(".py").exists()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, *, type_checking: bool = False) -> set[str]:
    """The lab modules ``path`` imports; with ``type_checking``, also those it imports for the
    type checker only (a dependency all the same: the two modules are understood together)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child) and not type_checking:
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # "from lab.records import plots" imports the module lab.records.plots; the
                # package itself counts only for a name it defines (its __init__ is not the
                # dependency of a module that takes a sibling through it)
                modules = {f"{child.module}.{alias.name}" for alias in child.names
                           if is_module(f"{child.module}.{alias.name}")}
                found.update(modules)
                if len(modules) < len(child.names):
                    found.add(child.module)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if name == "lab" or name.startswith("lab.")}


def import_graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    return {module_name(path): imports_of(path, type_checking=type_checking)
            for path in sorted(PACKAGE.rglob("*.py"))}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's strongly
    connected components of more than one module, or a module importing itself)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1 or module in graph[module]:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_each_part_imports_only_the_parts_below_it() -> None:
    wrong = []
    for module, imported in import_graph().items():
        if module == "lab":
            continue  # the front door re-exports every part, lazily
        part = part_of(module)
        for target in imported:
            target_part = part_of(target)
            if target_part != part and target_part not in ALLOWED[part]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


# Record.report() -- the method issue 26 names -- writes the HTML report of a record: the one
# storage module that reaches presentation, and only from inside that method, when it is called.
# The report is built on records (a cycle through this one edge, which the cycle test leaves out:
# the method only hands the record over; nothing else in record.py knows the report).
CALLED_NOT_LOADED = {("lab.records.record", "lab.records.html_report")}


def module_level_imports(module: str) -> set[str]:
    """What ``module`` imports when it is loaded: not inside its functions."""
    path = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                inner.lab_in_function = True  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not getattr(node, "lab_in_function", False):
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
        elif isinstance(node, ast.Import) and not getattr(node, "lab_in_function", False):
            found.update(alias.name for alias in node.names)
    return found


def test_storage_does_not_import_presentation() -> None:
    graph = import_graph()
    storage = [m for m in graph if m.startswith("lab.records.") and m not in PRESENTATION]
    wrong = [f"{m} imports {t}" for m in storage for t in graph[m]
             if t in PRESENTATION and (m, t) not in CALLED_NOT_LOADED]
    assert not wrong, "\n".join(wrong)
    for module, target in CALLED_NOT_LOADED:
        assert target not in module_level_imports(module), \
            f"{module} loads {target}: import it where it is called"


def test_the_package_shows_its_parts() -> None:
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level
    assert {"server.py", "loadgen.py"} <= set(top_level)
    assert len(subpackages) >= 4, subpackages
    assert set(ALLOWED) >= {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {"lab"}


def test_front_door_exports_what_users_need() -> None:
    wanted = {"start_server", "ServerConfig", "ServerHandle", "LoadSpec", "run_load", "start_load",
              "LoadResult", "Record", "RecordStore", "plots", "panel", "LabError", "ConfigError",
              # routes of one's own, and the raw samples the notebooks read
              "Router", "Request", "Response", "MISSING", "ErrorKind", "latency_ns", "start_ns"}
    assert wanted <= set(lab.__all__)
    for name in lab.__all__:
        assert getattr(lab, name) is not None, name
    with pytest.raises(AttributeError):
        lab.no_such_name  # noqa: B018


@pytest.mark.parametrize(("command", "not_needed"), [
    ("serve", {"numpy", "pandas", "matplotlib", "ipywidgets", "pyarrow"}),
    ("bench", {"matplotlib", "ipywidgets"}),
    ("sweep", {"matplotlib", "ipywidgets"}),  # the forest plot loads matplotlib only for --plot
])
def test_a_command_loads_only_what_it_needs(command: str, not_needed: set[str]) -> None:
    """``python -m lab serve`` must not pay for numpy, pandas, matplotlib or the widgets."""
    probe = (f"import sys; from lab.cli import build_parser; build_parser({command!r}); "
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & not_needed, loaded


def test_a_generator_worker_loads_no_tables_or_plots() -> None:
    """Every run starts a forkserver that preloads lab.engine.worker: pandas alone took a
    quarter of a second of that start."""
    probe = ("import sys, lab.engine.worker, lab.engine.core; "
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & {"pandas", "matplotlib", "ipywidgets", "pyarrow", "scipy"}, loaded


# A path as the code names it: lab/http/core.py, lab/notebook/assets (not latency-lab/x).
NAMED_PATH = re.compile(r"(?<![\w/.-])lab/[A-Za-z0-9_./]*[A-Za-z0-9_]")
NAMING_FILES = ("lab/**/*.py", "lab/**/*.c", "lab/**/*.js", "tests/*.py", "benchmarks/*", "scripts/*",
                "docs/*.md", "README.md", "notebooks/*.ipynb")


def test_every_lab_path_named_in_code_and_docs_exists() -> None:
    """A file that moved leaves comments, docstrings and docs pointing at nothing; this finds them."""
    root = PACKAGE.parent
    missing = [f"{path.relative_to(root)}:{number}: {named}"
               for pattern in NAMING_FILES for path in sorted(root.glob(pattern)) if path.is_file()
               for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
               for named in (found.group(0).rstrip(".") for found in NAMED_PATH.finditer(line))
               if not (root / named).exists()]
    assert not missing, "\n".join(missing)


def test_the_package_says_it_is_typed() -> None:
    """PEP 561: py.typed in the package, and in what setuptools ships with it."""
    assert (PACKAGE / "py.typed").is_file()
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["lab"]


def test_cycles_are_found_round_a_loop_and_not_along_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c"], ["e"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    """Across parts and inside a folder, counting imports inside functions and those for the
    type checker only: a lane type and its engine, a connection and the listener, the panel and
    its knob setter, a record and its schema are each understood without the other."""
    graph = import_graph(type_checking=True)
    del graph["lab"]  # the front door names every part, lazily, and none imports it
    for module, target in CALLED_NOT_LOADED:  # a method's convenience, checked above
        graph[module].discard(target)
    assert import_cycles(graph) == []
