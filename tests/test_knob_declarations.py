"""A server knob is declared once: where it applies (lab/http/knobs.py) drives applying it,
reading it back, reconfiguring it and the docs' table of when it takes effect."""

from __future__ import annotations

import argparse
import json
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from rawhttp import Reader, connect, exchange, get

from lab.http.config import ServerConfig
from lab.http.knobs import SocketOption, Where, knobs_by_where, restart_knobs, socket_plan, when_table
from lab.http.state import Settings
from lab.options import add_arguments, from_arguments, knob, knobs, parse_value
from lab.server import RESTART_KNOBS, start_server

ROOT = Path(__file__).resolve().parent.parent
TABLE_BEGIN = ("<!-- when-table: generated from each knob's applies= (lab.http.knobs.when_table); "
               "a test checks it -->\n")
TABLE_END = "<!-- /when-table -->\n"

# A knob the lab does not have: how long a connection idles before the kernel's first
# keep-alive probe (net.ipv4.tcp_keepalive_time, 7200 s unless changed).


@dataclass(frozen=True, kw_only=True)
class ProbeConfig(ServerConfig):
    keepidle_seconds: int | None = knob(
        None, minimum=1, maximum=32767, unit="s",
        help="TCP_KEEPIDLE: idle time before the first keep-alive probe; None = the kernel's",
        flag="--keepidle", metavar="SECONDS", group="tcp",
        applies=SocketOption(level=socket.IPPROTO_TCP, name=socket.TCP_KEEPIDLE))


def sockopts_on(sock: socket.socket, reader: Reader) -> dict:
    sock.sendall(get("/sockopts"))
    return json.loads(reader.response().body)


def test_a_knob_declared_once_is_applied_read_back_reconfigured_and_listed():
    with start_server(ProbeConfig(keepidle_seconds=30)) as server, connect(server.port) as sock:
        reader = Reader(sock)
        assert sockopts_on(sock, reader)["keepidle_seconds"] == 30  # applied at accept, read back
        server.reconfigure(keepidle_seconds=45)
        assert sockopts_on(sock, reader)["keepidle_seconds"] == 45  # reaches the open connection
        assert [change.label for change in server.changes] == ["keepidle_seconds → 45"]
        server.reconfigure(keepidle_seconds=None)  # None cannot be written back: left as it is
        assert sockopts_on(sock, reader)["keepidle_seconds"] == 45
    assert "`keepidle_seconds`" in when_table(ProbeConfig).splitlines()[2]  # the socket row
    assert "keepidle_seconds" in knobs_by_where(ProbeConfig)[Where.SOCKET]
    parser = argparse.ArgumentParser()
    add_arguments(parser, ProbeConfig)
    assert "--keepidle" in parser.format_help()


def test_a_knob_that_is_not_set_is_not_written():
    with socket.socket() as fresh:
        kernel_default = fresh.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
    with start_server(ProbeConfig(), keepidle_seconds=kernel_default + 1) as server:
        server.reconfigure(keepidle_seconds=None)  # new connections: nothing written
        reported = json.loads(exchange(server.port, get("/sockopts")).body)
    assert reported["keepidle_seconds"] == kernel_default


def test_a_default_server_writes_only_nodelay_to_a_new_connection():
    # TCP_QUICKACK=0 is not "leave it alone": it puts the connection in delayed-ACK mode at once.
    assert socket_plan(ServerConfig()).on_accept == ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
    assert socket_plan(ServerConfig()).on_listener == ()


def test_a_new_connection_to_a_default_server_keeps_the_kernels_quickack_mode(server):
    # A new connection starts in quick-ACK mode and stays in it until the server first answers.
    with connect(server.port) as sock:
        reported = sockopts_on(sock, Reader(sock))
    assert reported["quickack"] is True
    assert reported["linger"] == {"enabled": False, "seconds": 0}


def test_a_live_change_writes_what_changed_each_way():
    first = Settings.from_config(ServerConfig())
    on = Settings.from_config(ServerConfig(linger_seconds=0, quickack=True, send_buffer_bytes=65536),
                              previous=first)
    assert sorted(on.sockets.on_change) == sorted([
        (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
        (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1),
        (socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)])
    assert on.sockets.on_listener == ((socket.SOL_SOCKET, socket.SO_SNDBUF, 65536),)
    off = Settings.from_config(ServerConfig(), previous=on)
    # Linger off is the kernel's default and can be written back; quick-ACK off is the
    # connection no longer re-arming it, and a buffer's autotuning cannot be switched back on.
    assert off.sockets.on_change == ((socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0)),)
    assert Settings.from_config(ServerConfig(nodelay=False), previous=first).sockets.on_change == (
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 0),)


def test_quickack_has_three_states_and_only_kernel_default_writes_nothing():
    def quickack_writes(writes: tuple) -> list:
        return [w for w in writes if w[:2] == (socket.IPPROTO_TCP, socket.TCP_QUICKACK)]

    assert quickack_writes(socket_plan(ServerConfig()).on_accept) == []
    assert quickack_writes(socket_plan(ServerConfig(quickack=True)).on_accept) == [
        (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)]
    assert quickack_writes(socket_plan(ServerConfig(quickack=False)).on_accept) == [
        (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)]
    untouched = Settings.from_config(ServerConfig())
    forced_off = Settings.from_config(ServerConfig(quickack=False), previous=untouched)
    assert forced_off.sockets.on_change == ((socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0),)
    # Back to the kernel's default: no value written would undo a forced mode, so none is.
    assert Settings.from_config(ServerConfig(), previous=forced_off).sockets.on_change == ()


@pytest.mark.parametrize(("flags", "expected"), [
    ([], None), (["--quickack"], True), (["--no-quickack"], False)])
def test_the_cli_spells_the_three_quickack_states(flags, expected):
    parser = argparse.ArgumentParser()
    add_arguments(parser, ServerConfig)
    assert from_arguments(ServerConfig, parser.parse_args(flags)).quickack is expected
    help_text = " ".join(parser.format_help().split())
    assert "[on, off or kernel default; default: kernel default]" in help_text
    assert parse_value(ServerConfig, "quickack", "default") is None
    assert parse_value(ServerConfig, "quickack", "off") is False


def test_settings_carry_every_knob_of_the_config():
    config = ServerConfig(nodelay=False, keepalive_max_requests=3, ws_compression=True, stall_ms=5.0)
    settings = Settings.from_config(config)
    assert all(getattr(settings, field.name) == getattr(config, field.name)
               for field, _ in knobs(ServerConfig))
    assert settings.keep_line == b"Keep-Alive: timeout=5, max=3\r\n"


def test_every_knob_says_where_it_applies_and_listener_knobs_restart():
    grouped = knobs_by_where(ServerConfig)
    listed = [name for names in grouped.values() for name in names]
    assert sorted(listed) == sorted(field.name for field, _ in knobs(ServerConfig))
    assert RESTART_KNOBS == restart_knobs(ServerConfig) == {"host", "port", "backlog", "loop", "workers",
                                                            "tls"}


def test_a_knob_that_does_not_say_where_it_applies_is_refused():
    @dataclass(frozen=True, kw_only=True)
    class Unsaid(ServerConfig):
        mystery: bool = knob(False, help="applies nowhere anyone said")

    with pytest.raises(TypeError, match=r"Unsaid.mystery does not say where it applies"):
        when_table(Unsaid)


@pytest.mark.parametrize("document", ["docs/live.md", "README.md"])
def test_the_docs_table_of_when_a_knob_takes_effect_is_the_generated_one(document):
    text = (ROOT / document).read_text()
    assert text.count(TABLE_BEGIN) == 1 and text.count(TABLE_END) == 1, document
    written = text.split(TABLE_BEGIN)[1].split(TABLE_END)[0]
    assert written == when_table(ServerConfig), (
        f"{document}'s table differs from the knobs' declarations; paste the output of "
        "python -c 'import lab; from lab.http.knobs import when_table; "
        "print(when_table(lab.ServerConfig), end=\"\")' between its when-table markers")
