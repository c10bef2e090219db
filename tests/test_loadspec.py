"""LoadSpec: one validated definition of the load, shared by the API, the CLI and widgets."""

from __future__ import annotations

import argparse

import pytest

from lab.cli import build_parser
from lab.cli.bench import spec_from_arguments
from lab.engine.spec import LoadSpec, build_request, worker_connections, worker_max_requests
from lab.options import ConfigError, as_dict, from_dict

URL = "http://127.0.0.1:8080/fast"


def test_defaults_are_a_bounded_closed_loop() -> None:
    spec = LoadSpec(url=URL)
    assert (spec.mode, spec.connections, spec.duration_seconds, spec.timeout_seconds) == (
        "closed", 10, 10.0, 5.0)
    assert spec.request_paths == ("/fast",)


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://192.168.1.1:8080/x", "http://[2001:db8::1]/"])
def test_a_non_loopback_target_is_refused_with_a_clear_message(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LoadSpec(url=url)
    assert caught.value.option == "url"
    assert "not a loopback address" in str(caught.value)
    assert "pass allow_remote=True" in str(caught.value)  # the CLI says --allow-remote instead


def test_remote_targets_need_the_explicit_opt_in() -> None:
    assert LoadSpec(url="http://10.0.0.1/", allow_remote=True).target.host == "10.0.0.1"


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://127.1.2.3:9/", "http://[::1]:8080/",
                                 "http://localhost:8080/"])
def test_loopback_targets_are_accepted(url: str) -> None:
    assert LoadSpec(url=url).target.port in (80, 9, 8080)


@pytest.mark.parametrize(("changes", "option"), [
    ({"mode": "open"}, "rate"),
    ({"rate": 100.0}, "rate"),
    ({"connections": 0}, "connections"),
    ({"duration_seconds": 0}, "duration_seconds"),
    ({"workers": 4, "connections": 2}, "workers"),
    ({"mode": "sideways"}, "mode"),
    ({"url": "ftp://127.0.0.1/"}, "url"),
    ({"insecure": True}, "insecure"),  # TLS settings on a plain target
    ({"tls_resume": True}, "tls_resume"),
    ({"ca_file": "ca.pem"}, "ca_file"),
    ({"url": "https://127.0.0.1/", "insecure": True, "ca_file": "ca.pem"}, "ca_file"),
    ({"method": "get"}, "method"),
    ({"paths": ("nope",)}, "paths"),
])
def test_bad_settings_name_the_setting(changes: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LoadSpec(**{"url": URL, **changes})  # type: ignore[arg-type]
    assert caught.value.option == option


def test_request_bytes_are_built_once_from_the_spec() -> None:
    spec = LoadSpec(url="http://127.0.0.1:8080/fast?x=1", method="POST", body="hello",
                    headers=(("X-Test", "1"),), keepalive=False)
    assert build_request(spec, spec.request_paths[0]) == (
        b"POST /fast?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Test: 1\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")


def test_connections_and_budget_split_across_workers() -> None:
    spec = LoadSpec(url=URL, connections=10, workers=3, max_requests=100)
    assert [worker_connections(spec, w) for w in range(3)] == [4, 3, 3]
    assert [worker_max_requests(spec, w) for w in range(3)] == [34, 33, 33]


def test_spec_round_trips_through_a_plain_dict() -> None:
    spec = LoadSpec(url=URL, mode="open", rate=500.0, paths=("/a", "/b"), headers=(("A", "b"),))
    assert from_dict(LoadSpec, as_dict(spec)) == spec


def _bench_arguments(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def test_cli_flags_come_from_the_knobs_and_rate_selects_the_open_loop() -> None:
    spec = spec_from_arguments(_bench_arguments(
        URL, "--connections", "7", "--rate", "250", "--duration", "3", "--warmup", "1",
        "--workers", "1", "--no-keepalive", "--timeout", "2", "-H", "X-A: b", "--path", "/p"))
    assert (spec.mode, spec.rate, spec.connections, spec.duration_seconds, spec.warmup_seconds) == (
        "open", 250.0, 7, 3.0, 1.0)
    assert (spec.keepalive, spec.timeout_seconds, spec.headers, spec.paths) == (
        False, 2.0, (("X-A", "b"),), ("/p",))
    assert spec_from_arguments(_bench_arguments(URL)).mode == "closed"


def test_the_notebook_panel_builds_its_widgets_from_the_same_knobs() -> None:
    from lab.notebook.widgets import KnobForm

    spec = LoadSpec(url=URL)
    form = KnobForm(LoadSpec, spec)
    assert {"mode", "connections", "rate", "duration_seconds", "keepalive"} <= set(form.controls)
    assert "url" not in form.controls  # declared widget=False: the panel's path box sets it
    form.controls["connections"].value_widget.value = 25
    assert form.build(spec).connections == 25
    form.controls["connections"].value_widget.value = 0
    with pytest.raises(ConfigError, match="connections"):
        form.build(spec)
