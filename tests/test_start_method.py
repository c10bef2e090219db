"""One start method for every process the lab starts, forced by LAB_START_METHOD.

Python 3.14 makes forkserver the default on Linux; the suite runs with it forced on 3.11-3.13
(``LAB_START_METHOD=forkserver bash scripts/test.sh``). These check the switch itself, and that a
process server and a load both run under each method.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.errors import ConfigError
from lab.resources import process_context

BOTH_SIDES = """
import multiprocessing, lab
with lab.start_server(isolation="process", workers=2) as server:
    result = lab.run_load(lab.LoadSpec(url=server.url + "/fast", connections=2, max_requests=200,
                                       workers=2, duration_seconds=20))
print(multiprocessing.get_start_method(), result.requests, sum(result.errors.values()))
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_the_switch_names_the_method(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_START_METHOD", method)
    assert process_context().get_start_method() == method


def test_a_method_the_lab_does_not_allow_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_START_METHOD", "fork")
    with pytest.raises(ConfigError) as refused:
        process_context()
    assert refused.value.option == "LAB_START_METHOD"
    assert "'fork' is not allowed; allowed: forkserver, spawn" in str(refused.value)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_process_server_and_a_load_run_under_each_method(method: str) -> None:
    """The server's process mode and the generator's workers, started the way 3.14 starts them."""
    code = f"import multiprocessing\nmultiprocessing.set_start_method({method!r})\n" + BOTH_SIDES
    done = subprocess.run([sys.executable, "-c", "if __name__ == '__main__':\n" +
                           "\n".join("    " + line for line in code.strip().splitlines())],
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, "LAB_START_METHOD": method})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [method, "200", "0"]
