"""A user's slip on the command line: one line that says what to write instead, exit 2, and
nothing run. Each case is one the issue quotes (issue 26, "The CLI and exports")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab.cli import main
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    output = capsys.readouterr()
    assert output.out == "" and "Traceback" not in output.err
    lines = output.err.strip().splitlines()
    assert len(lines) == 1, output.err
    assert lines[0].startswith(f"python -m lab {argv[0]}: error: ")
    assert lines[0].endswith(f"(see python -m lab {argv[0]} --help)")
    return lines[0]


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", "--nodelay", "off"], "--nodelay takes no value: write --no-nodelay to turn it off"),
    (["serve", "--nodelay=off"], "--nodelay takes no value: write --no-nodelay to turn it off"),
    (["serve", "--no-nodelay", "on"], "--no-nodelay takes no value: write --nodelay alone to turn it on"),
    (["bench", "http://127.0.0.1:9/", "--conections", "5"],
     "unrecognized arguments: --conections (did you mean --connections?)"),
    (["serve", "--read-bufer", "64KiB"], "(did you mean --read-buffer?)"),
    (["bench", "http://127.0.0.1:9/", "-d", "5x"],
     "argument -d/--duration: '5x' is not a duration: write it as 10, 500ms, 10s or 2m"),
    (["bench", "http://127.0.0.1:9/", "--late-after", "1x"], "'1x' is not a time: write it as 40 (ms)"),
    (["serve", "--read-buffer", "lots"], "'lots' is not a size: write it as 65536, 64KiB or 1MiB"),
    (["bench", "http://127.0.0.1:9/", "-c", "ten"], "argument -c/--connections: 'ten' is not a whole number"),
    (["bench", "127.0.0.1:8080/fast"],
     "URL: '127.0.0.1:8080/fast' has no scheme: write http://127.0.0.1:8080/fast"),
    (["bench", "/fast"], "URL: '/fast' is a path: give the whole URL, e.g. http://127.0.0.1:8080/fast"),
    (["capacity", "/fast", "--slo", "p99<1ms"], "'/fast' is a path: give the whole URL"),
    (["bench", "http://192.0.2.1/fast"], "the lab only sends traffic to this machine; pass --allow-remote "
                                         "for a target you own"),
    (["capacity", "http://192.0.2.1/fast", "--slo", "p99<1ms"], "; pass --allow-remote for a target you own"),
    (["sweep", "http://127.0.0.1:8080/fast", "--knob", "nodelay=on,off", "--no-save"],
     "PATH: 'http://127.0.0.1:8080/fast' is a URL: sweep starts its own lab server, so give the "
     "path alone (e.g. /fast); for a server already running, use bench URL"),
    (["sweep", "/fast", "--knob", "nodelay=on,off", "-d", "3y", "--no-save"], "'3y' is not a duration"),
    # (Python 3.12.8 and later write the choices without quotes)
    (["plot", "latest", "--kind", "percentile"], "); did you mean percentiles?"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_a_slip_is_one_line_saying_what_to_write(argv: list[str], says: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(capsys, argv)
    assert says in line, line
    assert "allow_remote=True" not in line  # the CLI names its flag, not the Python argument
    assert "invalid float value" not in line and "invalid int value" not in line


def test_python_callers_are_told_the_argument_not_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"pass allow_remote=True for a target you own$"):
        LoadSpec(url="http://192.0.2.1/")


def test_a_flag_nothing_resembles_is_reported_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(capsys, ["bench", "http://127.0.0.1:9/", "--zzz"])
    assert line.startswith("python -m lab bench: error: unrecognized arguments: --zzz (see")


def test_the_top_level_help_is_written_for_users() -> None:
    done = subprocess.run([sys.executable, "-m", "lab", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert "``" not in done.stdout and "own module" not in done.stdout  # not the module's docstring
    assert "load generator" in done.stdout
    assert "python -m lab bench http://127.0.0.1:8080/fast" in done.stdout  # how to start
    assert "python -m lab COMMAND --help" in done.stdout


def test_a_mistyped_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["bnch", "http://127.0.0.1:9/"])
    assert stopped.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("python -m lab: error: argument COMMAND: invalid choice: 'bnch'")
    assert line.endswith("; did you mean bench? (see python -m lab --help)")
