"""``python -m lab serve``: run the lab server in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError
from lab.http import connection
from lab.http.asgi import AsgiHost, Lifespan, serve_app
from lab.http.config import ServerConfig
from lab.http.core import SHUTDOWN_GRACE_SECONDS, LabServer
from lab.http.routing import Router
from lab.netpath import EmulatedPath, Path, start_path
from lab.netpath.spec import ALLOWED_FORM
from lab.options import add_arguments, from_arguments
from lab.server import ProcessRunner, format_url, load_router, serve_until_stopped


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the tunable HTTP/1.1 server",
        description="Run the lab's tunable HTTP/1.1 server. Every flag is a knob of ServerConfig, "
                    "and applies to the demo routes, a --router's routes or an --app alike.")
    add_arguments(parser, ServerConfig)
    served = parser.add_mutually_exclusive_group()
    served.add_argument("--router", default=None, metavar="MODULE:FUNCTION",
                        help="routes to serve (default: the demo routes, lab/http/demo_routes.py)")
    served.add_argument("--app", default=None, metavar="MODULE:ATTRIBUTE",
                        help="an ASGI 3 app to serve instead of the routes (a FastAPI or Starlette "
                             "app, or any ASGI callable), e.g. myservice.main:app; the module is "
                             "imported from the current directory")
    parser.add_argument("--lifespan", default="auto", choices=("auto", "on", "off"),
                        help="the --app's lifespan startup and shutdown: auto runs them if the app "
                             "speaks the protocol, on requires it, off skips it (default: auto)")
    add_emulate_flag(parser, "serve behind an emulated network path; the server listens on the "
                             "path's address, in a network namespace of its own")
    parser.set_defaults(run=run)


def add_emulate_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--emulate PATH``, as serve and sweep take it."""
    parser.add_argument("--emulate", default=None, metavar="PATH",
                        help=f"{what}; e.g. '{ALLOWED_FORM}' (delay each way; any of them, in any "
                        "order; needs root or CAP_NET_ADMIN)".replace("%", "%%"))


def announce(config: ServerConfig, port: int) -> None:
    print(f"listening on {format_url(config.host, port, config.scheme)}", flush=True)
    if connection.scan_head is None:
        print("(lab/http/_headscan.c was not compiled where the lab was installed: every head "
              "goes through llhttp's callbacks, ~25 % slower; reinstall with a C compiler)", flush=True)


def run(arguments: argparse.Namespace) -> int:
    config: ServerConfig = from_arguments(ServerConfig, arguments)
    app = None
    if arguments.app is not None:
        if "" not in sys.path:
            sys.path.insert(0, "")  # as uvicorn does: the app's module is found where you are
        app = serve_app(arguments.app, arguments.lifespan)  # a name that does not import: one line
    served = Served(arguments.router, arguments.app, app, arguments.lifespan)
    if arguments.emulate is None:
        return _serve(config, served)
    spec = Path.parse(arguments.emulate)
    if "host" in vars(arguments):
        raise ConfigError("host", "with --emulate the server listens on the path's own address "
                          "(printed at start); leave --host out")
    path = start_path(spec)
    try:
        print(path.describe(), flush=True)
        if not path.netem_available():
            print("(this kernel has no netem qdisc: the relay process is the path)", flush=True)
        return _serve(config.replace(host=path.server_address), served, path)
    finally:
        path.stop()


@dataclass(frozen=True)
class Served:
    """What the server answers with: the routes (a --router, or the demo's) or an --app."""

    router: str | None
    app_name: str | None
    app: AsgiHost | None
    lifespan: Lifespan


def _serve(config: ServerConfig, served: Served, path: EmulatedPath | None = None) -> int:
    if config.workers > 1:
        return _serve_workers(config, served, path)
    if path is not None:
        path.enter()  # this thread listens in the path's namespace; the relay stays outside
    return _serve_here(config, served)


def announce_stop(config: ServerConfig, port: int, signal_number: int | None) -> None:
    """A server that goes quiet on Ctrl-C leaves the user wondering whether it is still there."""
    why = f" ({signal.Signals(signal_number).name})" if signal_number is not None else ""
    print(f"stopped{why}: no longer listening on {format_url(config.host, port)}", flush=True)


def _serve_here(config: ServerConfig, served: Served) -> int:
    """One worker: the loop runs in this process, with nothing between it and the socket."""
    stopped_by: int | None = None
    listening_on: int | None = None
    serving: LabServer | None = None

    def cut(*_: object) -> None:
        if serving is not None:
            serving.cut_now()

    def stop(loop: asyncio.AbstractEventLoop, signal_number: int) -> None:
        nonlocal stopped_by
        if stopped_by is not None:  # a second Ctrl-C while open connections finish: cut them
            cut()
            return
        stopped_by = signal_number
        # From here a stop signal cuts the open connections, by Python's own handler rather
        # than the loop's: uvloop pauses its signal handling between run_forever and the
        # close's run_until_complete, and a signal sent in that moment was lost.
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, cut)
        if serving is not None and serving.open_connections:
            print(f"stopping: {serving.open_connections} open connection(s) get up to "
                  f"{SHUTDOWN_GRACE_SECONDS:g} s to finish (Ctrl-C again cuts them)", flush=True)
        loop.stop()

    def ready(loop: asyncio.AbstractEventLoop, server: LabServer, port: int) -> None:
        nonlocal listening_on, serving
        listening_on = port
        serving = server
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop, loop, signal_number)
        # Announce from inside the running loop: uvloop can miss a signal that arrives between
        # add_signal_handler and run_forever, and a caller may signal as soon as it reads it.
        loop.call_soon(announce, config, port)

    try:
        router = load_router(served.router) if served.app is None else Router()
        serve_until_stopped(config, router, ready, served.app)
    except OSError as error:
        print(f"cannot listen on {config.host}:{config.port}: {error.strerror}", file=sys.stderr)
        return 1
    if listening_on is not None:
        announce_stop(config, listening_on, stopped_by)
    return 0


def _serve_workers(config: ServerConfig, served: Served, path: EmulatedPath | None) -> int:
    runner = ProcessRunner(config, served.router, path.namespace if path is not None else None,
                           served.app_name, served.lifespan)
    try:
        port = runner.start()
    except OSError as error:
        print(f"cannot listen on {config.host}:{config.port}: {error.strerror}", file=sys.stderr)
        return 1
    # Block the stop signals only now: the workers are started, so they do not inherit the
    # mask. Announce after blocking: a caller may signal as soon as it reads the line.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    announce(config, port)
    received = None
    try:
        received = signal.sigwait(stop_signals)
        print(worker_shares(runner.worker_stats()), flush=True)
    finally:
        runner.stop()
    announce_stop(config, port, received)
    return 0


def worker_shares(snapshots: list[dict[str, Any]]) -> str:
    """``worker 0: 6,120 requests on 12 connections (51 %)``, one line per worker: how evenly
    the balance mode spread the load is the first thing to know about several workers."""
    total = sum(snapshot["requests"] for snapshot in snapshots) or 1
    return "\n".join(
        f"worker {index}: {snapshot['requests']:,} requests on "
        f"{snapshot['connections_total']:,} connections ({100 * snapshot['requests'] / total:.0f} %)"
        for index, snapshot in enumerate(snapshots))
