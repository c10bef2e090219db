"""Knobs as a user reads and types them: ranges in their units, durations and sizes with suffixes."""

from __future__ import annotations

import argparse

import pytest

from lab.engine.spec import LoadSpec
from lab.http.config import ServerConfig
from lab.options import Knob, add_arguments, describe_range, format_quantity, from_arguments


@pytest.mark.parametrize(("value", "unit", "text"), [
    (1024, "bytes", "1 KiB"), (64 * 1024 * 1024, "bytes", "64 MiB"), (1536, "bytes", "1536 bytes"),
    (10_000_000, "requests/s", "10,000,000 requests/s"), (0.001, "s", "0.001 s"), (86_400, "", "86,400"),
])
def test_quantities_are_shown_in_their_unit(value: float, unit: str, text: str) -> None:
    assert format_quantity(value, unit) == text


def test_ranges_read_at_a_glance() -> None:
    assert describe_range(Knob(help="", minimum=1024, maximum=64 * 1024 * 1024, unit="bytes"),
                          True, int) == "1 KiB to 64 MiB (or none)"
    assert describe_range(Knob(help="", minimum=0.1, maximum=1e7, unit="requests/s"),
                          False, float) == "0.1 to 10,000,000 requests/s"
    assert describe_range(Knob(help=""), False, bool) == "on or off"


def _parse(config_class: type, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, config_class)
    return parser.parse_args(list(argv))


def test_durations_and_sizes_take_suffixes_and_short_flags_work() -> None:
    spec = from_arguments(LoadSpec, _parse(LoadSpec, "-d", "500ms", "-c", "7", "-t", "1", "--timeout", "2m",
                                           "--threshold", "p99<5ms", "--threshold", "errors<1%"),
                          url="http://127.0.0.1:9/")
    assert (spec.duration_seconds, spec.connections, spec.timeout_seconds) == (0.5, 7, 120.0)
    assert spec.thresholds == ("p99<5ms", "errors<1%")
    config = from_arguments(ServerConfig, _parse(ServerConfig, "--read-buffer", "64KiB",
                                                 "--send-buffer", "1MiB"))
    assert (config.read_buffer_bytes, config.send_buffer_bytes) == (65536, 1024 * 1024)


def test_a_bad_threshold_in_a_spec_names_the_setting() -> None:
    with pytest.raises(ValueError, match="thresholds: 'p50 is fast'"):
        LoadSpec(url="http://127.0.0.1:9/", thresholds=("p50 is fast",))


def test_a_choice_among_literals_is_a_flag_that_parses() -> None:
    # `serve --loop asyncio` and `bench --message-type binary` once failed: argparse was given
    # typing.Literal itself as the converter.
    server_parser, load_parser = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_arguments(server_parser, ServerConfig)
    add_arguments(load_parser, LoadSpec)
    assert from_arguments(ServerConfig, server_parser.parse_args(["--loop", "asyncio"])).loop == "asyncio"
    spec = from_arguments(LoadSpec, load_parser.parse_args(["--message-type", "binary"]),
                          url="ws://127.0.0.1:1/ws/echo")
    assert spec.message_type == "binary"
    with pytest.raises(SystemExit):
        load_parser.parse_args(["--message-type", "json"])
