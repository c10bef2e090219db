"""The generator driven from a real Jupyter kernel: the run does not block the kernel.

The server runs in a thread of the kernel (the notebooks' default) and the load in the
generator's own processes; the kernel keeps executing while the load runs.
"""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT_SECONDS = 120  # nbclient has no timeout by default; a hung cell must fail

CELLS = [
    """
from lab.loadgen import LoadSpec, start_load
from lab.server import start_server
server = start_server()
run = start_load(LoadSpec(url=server.url + "/fast", connections=2, duration_seconds=1.0))
""",
    # This cell runs while the load does: the kernel is not blocked.
    """
first = run.progress()
assert not run.done(), first
""",
    """
seen = []
result = await run.wait(interval=0.1, on_progress=seen.append)
server.stop()
assert result.errors == {} and result.responses > 0, result.to_json_dict()
assert any(p.phase == "running" for p in seen), seen
print(result.rps)
""",
]


def test_a_kernel_starts_a_load_and_awaits_it() -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in CELLS])
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3")
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    assert notebook.cells[-1].outputs[0]["text"].strip()
