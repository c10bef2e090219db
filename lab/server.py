"""Start the lab's HTTP/1.1 server where a notebook or a script can use it.

``start_server(...)`` returns a :class:`ServerHandle` once the port is listening. The server
runs either in a background thread with an event loop of its own (``isolation="thread"``, the
default: it works inside a Jupyter kernel, which already runs a loop, and shares the kernel's
GIL -- which is itself a lesson) or in separate processes (``isolation="process"``; also
what ``workers > 1`` needs, each worker a process sharing the port through SO_REUSEPORT).

    with start_server(nodelay=False, split_writes=True) as server:
        print(server.url)               # http://127.0.0.1:PORT
        server.reconfigure(nodelay=True)
        print(server.stats()["requests"])

``path=Path(delay_ms=20)`` (or ``path="delay=20ms"``) puts the server behind an emulated
network path (lab/netpath): it listens in a network namespace of its own, on the path's
address, and ``url`` is that address; ``stop()`` removes the path too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import importlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.reduction
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from websockets.frames import CloseCode

from lab.errors import ConfigError, ServerError
from lab.http.asgi import AsgiApp, AsgiHost, Lifespan, serve_app
from lab.http.config import TLS_CONTEXT_KNOBS, ServerConfig, server_tls_context
from lab.http.core import LabServer
from lab.http.demo_routes import demo_router
from lab.http.knobs import restart_knobs
from lab.http.routing import Router
from lab.http.state import add_snapshots
from lab.netpath import EmulatedPath, Path, start_path
from lab.netpath.system import enter_namespace
from lab.options import Knob, changed_knobs, format_value, knobs
from lab.resources import merge_series, process_context, refuse_when_imported_by_a_new_process
from lab.tls import tls_dir

if TYPE_CHECKING:
    import numpy as np

Isolation = Literal["thread", "process"]
Result = TypeVar("Result")
DEMO_ROUTER = "lab.http.demo_routes:demo_router"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0

RESTART_KNOBS = restart_knobs(ServerConfig)
_KNOB_SPECS = {field.name: spec for field, spec in knobs(ServerConfig)}
_UNKNOWN_SPEC = Knob(help="")


@dataclass(frozen=True)
class ConfigChange:
    """One knob changed on a running server, and when (perf_counter_ns: CLOCK_MONOTONIC, the
    clock the load generator's processes time requests with, so a run can place it)."""

    at_ns: int
    knob: str
    value: Any

    @property
    def label(self) -> str:
        """``nodelay → off``, ``linger_seconds → 0 s``: as the help prints values."""
        # A knob of a ServerConfig subclass is shown without its unit.
        spec = _KNOB_SPECS.get(self.knob, _UNKNOWN_SPEC)
        return f"{self.knob} → {format_value(self.value, spec)}"


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the configured kind, never installed as a global policy.

    ``uvloop.install()`` inside a Jupyter kernel hangs the kernel, so the
    loop is created directly and lives only in the thread or process that runs it.
    """
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def load_router(router: Router | str | None) -> Router:
    """A Router, or ``"module:function"`` naming a function that builds one."""
    if router is None:
        return demo_router()
    if isinstance(router, Router):
        return router
    module_name, colon, function_name = router.partition(":")
    if not colon or not module_name or not function_name:
        raise ConfigError("router", f"{router!r} is not MODULE:FUNCTION")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except ImportError as error:
        raise ConfigError("router", f"cannot import {module_name!r}: {error}") from None
    except AttributeError:
        raise ConfigError("router", f"{module_name!r} has no {function_name!r}") from None
    built = factory() if callable(factory) else factory
    if not isinstance(built, Router):
        raise ConfigError("router", f"{router} gave {type(built).__name__}, not a lab Router")
    return built


def format_url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


ReadyHook = Callable[[asyncio.AbstractEventLoop, LabServer, int], None]


def serve_until_stopped(config: ServerConfig, router: Router, on_ready: ReadyHook,
                        app: AsgiHost | None = None, sock: socket.socket | None = None) -> None:
    """Run a server on a new loop in the calling thread until something stops that loop.

    ``on_ready(loop, server, port)`` runs once the port listens: it is where each caller
    hangs its way of being stopped (signals, a control pipe, a thread-safe call) and says it is
    ready. An error before that (e.g. the port is in use, or ``app``'s lifespan startup
    failed) is raised to the caller. ``sock`` is a listening socket to accept from instead of
    binding one (a worker sharing another's accept queue).
    """
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)  # this thread only; a Jupyter kernel's loop is untouched
    server = LabServer(config, router, app)
    try:
        port = loop.run_until_complete(server.start(sock))
    except BaseException:
        loop.close()
        raise
    on_ready(loop, server, port)
    try:
        loop.run_forever()
    finally:
        _finish_closing(loop, server)
        loop.close()


def _finish_closing(loop: asyncio.AbstractEventLoop, server: LabServer) -> None:
    """Run the server's close to its end. Open connections get a grace period, and a stop asked
    again meanwhile (a second signal, a worker's parent saying stop after a SIGTERM) stops the
    loop again: that interrupts only this wait, so it is taken up again until the close is done."""
    code = CloseCode.SERVICE_RESTART if server.restarting else CloseCode.GOING_AWAY
    closing = loop.create_task(server.close(code))
    while True:
        try:
            loop.run_until_complete(closing)
            return
        except RuntimeError:  # "Event loop stopped before Future completed"
            if closing.done() or loop.is_closed():
                raise


# --- runners: where the loop lives ----------------------------------------------------------

class ThreadRunner:
    """The server's own event loop in a daemon thread of this process."""

    def __init__(self, config: ServerConfig, router: Router | str | None,
                 namespace: str | None = None, app: AsgiApp | str | None = None,
                 lifespan: Lifespan = "auto") -> None:
        self.config = config
        self._router = load_router(router) if app is None else Router()
        self._app = serve_app(app, lifespan) if app is not None else None
        self._namespace = namespace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: LabServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> int:
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True,
                                        name=f"lab-server-{self.config.port or 'auto'}")
        self._thread.start()
        self.port = started.result(timeout=START_TIMEOUT_SECONDS)
        return self.port

    def _run(self, started: concurrent.futures.Future[int]) -> None:
        def ready(loop: asyncio.AbstractEventLoop, server: LabServer, port: int) -> None:
            self._loop, self._server = loop, server
            started.set_result(port)

        try:
            if self._namespace is not None:
                enter_namespace(self._namespace)  # this thread only; it lives as long as the server
            serve_until_stopped(self.config, self._router, ready, self._app)
        except BaseException as error:
            if started.done():
                raise  # a failure while serving: let the thread's excepthook report it
            started.set_exception(error)

    def _call(self, function: Callable[[], Result]) -> Result:
        """Run ``function`` on the server's loop (its own thread) and wait for what it returns."""
        assert self._loop is not None

        async def call() -> Result:
            return function()
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(STOP_TIMEOUT_SECONDS)

    def apply(self, config: ServerConfig) -> None:
        server = self._server
        assert server is not None
        self.config = config
        self._call(lambda: server.apply(config))

    def stats(self) -> dict[str, Any]:
        assert self._server is not None
        return self._call(self._server.stats)

    def hiccups(self, since_ns: int) -> np.ndarray:
        server = self._server
        assert server is not None
        return self._call(lambda: server.hiccups.series(since_ns))

    def stop(self, restarting: bool = False) -> None:
        """Stop the loop; the server closes its connections gracefully (``restarting`` tells
        WebSocket clients the server comes back: close code 1012 rather than 1001)."""
        if self._loop is None or self._thread is None:
            return
        server, loop = self._server, self._loop

        def stop_loop() -> None:
            if server is not None:
                server.restarting = restarting
            loop.stop()
        if loop.is_running():
            loop.call_soon_threadsafe(stop_loop)
        self._thread.join(STOP_TIMEOUT_SECONDS)
        self._loop = None


class ProcessRunner:
    """One or more worker processes, each with its own loop, sharing the port."""

    def __init__(self, config: ServerConfig, router: Router | str | None,
                 namespace: str | None = None, app: AsgiApp | str | None = None,
                 lifespan: Lifespan = "auto") -> None:
        if isinstance(router, Router):
            raise ConfigError("router", "a server in another process needs the router as "
                              "'module:function' (importable there), not a Router object")
        if app is not None and not isinstance(app, str):
            raise ConfigError("app", "a server in another process needs the app as "
                              "'module:attribute' (importable there), not the app object")
        if app is not None:
            serve_app(app, lifespan)  # a name that does not import fails here, in one line
        self.config = config
        self._router = router or DEMO_ROUTER
        self._app = app
        self._lifespan = lifespan
        self._namespace = namespace
        self._workers: list[tuple[multiprocessing.process.BaseProcess,
                                  multiprocessing.connection.Connection]] = []
        self.port = 0

    def start(self) -> int:
        # Never fork: forking a Jupyter kernel (threads, zmq sockets) is unsafe; the worker code
        # lives in this package, so it is importable in the new process.
        context = process_context()
        config = self.config
        # Here, not in the workers: a mistake (an unreadable --cert) is told in one line (a
        # ConfigError does not cross the pipe), and the lab's certificate is made once.
        server_tls_context(config)
        # The workers come from the forkserver, whose environment is this process's when it
        # first started one: a LAB_TLS_DIR set since then would not reach them.
        tls_folder = str(tls_dir()) if config.tls else None
        # balance="shared": the first worker binds, and hands its listening socket to the
        # others over their control pipes (SCM_RIGHTS), so every worker accepts from one queue
        # -- in the emulated path's namespace too, where this process cannot bind.
        sharing = config.workers > 1 and config.balance == "shared"
        shared_fd: int | None = None
        try:
            for index in range(config.workers):
                parent_end, child_end = context.Pipe()
                inherit = sharing and index > 0
                process = context.Process(
                    target=worker_main,
                    args=(config, child_end, self._router, self._namespace, self._app,
                          self._lifespan, sharing and index == 0, inherit, tls_folder),
                    name=f"lab-server-worker-{index}", daemon=True)
                process.start()
                child_end.close()
                self._workers.append((process, parent_end))
                if inherit and shared_fd is not None and process.pid is not None:
                    multiprocessing.reduction.send_handle(parent_end, shared_fd, process.pid)
                port = self._expect(process, parent_end, "ready")
                if index == 0:
                    # The others bind the port the first one got (port 0 picks a free one).
                    self.port = port
                    config = config.replace(port=port)
                    if sharing:
                        shared_fd = multiprocessing.reduction.recv_handle(parent_end)
        except BaseException:
            self.stop()
            raise
        finally:
            if shared_fd is not None:
                os.close(shared_fd)  # the workers hold their own copies
        return self.port

    def _expect(self, process: multiprocessing.process.BaseProcess,
                pipe: multiprocessing.connection.Connection, kind: str) -> Any:
        if not pipe.poll(START_TIMEOUT_SECONDS):
            raise ServerError(f"server worker did not answer within {START_TIMEOUT_SECONDS:g} s")
        try:
            message = pipe.recv()
        except EOFError:
            process.join(1)  # reaped, so that its exit code is known
            raise ServerError(f"server worker exited unexpectedly (exit code {process.exitcode}; "
                              "what it printed went to this process's stderr)") from None
        if message[0] == "error":
            raise message[1]
        if message[0] != kind:
            raise ServerError(f"server worker said {message[0]!r}, expected {kind!r}")
        return message[1]

    def _ask_all(self, request: tuple[Any, ...], reply: str) -> list[Any]:
        for _, pipe in self._workers:
            pipe.send(request)
        return [self._expect(process, pipe, reply) for process, pipe in self._workers]

    def apply(self, config: ServerConfig) -> None:
        self.config = config
        self._ask_all(("apply", config.replace(port=self.port)), "applied")

    def stats(self) -> dict[str, Any]:
        return add_snapshots(self.worker_stats())

    def worker_stats(self) -> list[dict[str, Any]]:
        return self._ask_all(("stats",), "stats")

    def hiccups(self, since_ns: int) -> np.ndarray:
        parts = self._ask_all(("hiccups", since_ns), "hiccups")
        for worker, part in enumerate(parts):
            part["worker"] = worker
        return merge_series(parts)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(process.pid for process, _ in self._workers if process.pid is not None)

    def stop(self, restarting: bool = False) -> None:
        for _, pipe in self._workers:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("stop", restarting))
        for process, pipe in self._workers:
            process.join(STOP_TIMEOUT_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
            pipe.close()
        self._workers.clear()


def worker_main(config: ServerConfig, pipe: multiprocessing.connection.Connection,
                router: str, namespace: str | None = None, app: str | None = None,
                lifespan: Lifespan = "auto", share_listener: bool = False,
                inherit_listener: bool = False, tls_folder: str | None = None) -> None:
    """Entry point of a server worker process: serve until told to stop over the pipe.

    ``share_listener``: after saying ready, send the listening socket to the parent (which
    hands it to the other workers); ``inherit_listener``: accept from the socket the parent
    sends first instead of binding one. ``tls_folder``: where the parent keeps the lab's CA.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent
    if tls_folder is not None:
        os.environ["LAB_TLS_DIR"] = tls_folder

    def ready(loop: asyncio.AbstractEventLoop, server: LabServer, port: int) -> None:
        def on_command() -> None:
            try:
                command, *arguments = pipe.recv()
            except (EOFError, OSError):  # the parent is gone: nobody can stop us any more
                loop.remove_reader(pipe.fileno())
                loop.stop()
                return
            if command == "stats":
                pipe.send(("stats", server.stats()))
            elif command == "hiccups":
                pipe.send(("hiccups", server.hiccups.series(arguments[0])))
            elif command == "apply":
                server.apply(arguments[0])
                pipe.send(("applied", None))
            elif command == "stop":
                server.restarting = arguments[0]
                loop.stop()

        loop.add_reader(pipe.fileno(), on_command)
        loop.add_signal_handler(signal.SIGTERM, loop.stop)
        pipe.send(("ready", port))
        listening = server.listening_socket
        if share_listener and listening is not None:
            multiprocessing.reduction.send_handle(pipe, listening.fileno(), os.getppid())

    try:
        if namespace is not None:
            enter_namespace(namespace)  # behind an emulated path: listen in its namespace
        sock = None
        if inherit_listener:
            sock = socket.socket(fileno=multiprocessing.reduction.recv_handle(pipe))
            sock.setblocking(False)
        if app is None:
            serve_until_stopped(config, load_router(router), ready, sock=sock)
        else:
            serve_until_stopped(config, Router(), ready, serve_app(app, lifespan), sock)
    except BaseException as error:
        pipe.send(("error", error))


# --- the handle -----------------------------------------------------------------------------

class ServerHandle:
    """A running lab server: its address, its settings, its counters, and how to stop it."""

    def __init__(self, config: ServerConfig, isolation: Isolation,
                 router: Router | str | None, path: EmulatedPath | None = None,
                 app: AsgiApp | str | None = None, lifespan: Lifespan = "auto") -> None:
        if isolation not in ("thread", "process"):
            raise ConfigError("isolation", f"must be 'thread' or 'process', got {isolation!r}")
        if isolation == "thread" and config.workers > 1:
            raise ConfigError("workers", "more than one worker needs isolation='process'")
        self.config = config
        self.isolation = isolation
        if app is not None and router is not None:
            raise ConfigError("app", "serve either a router or an ASGI app, not both")
        self._router = router
        self._app = app  # a hosted ASGI app (or its "module:attribute"), else None
        self._lifespan = lifespan
        self._runner: ThreadRunner | ProcessRunner | None = None
        self.path = path  # the emulated network path in front of the server, if any
        self.port = 0
        # Every reconfigure, knob by knob, in order: a run in progress marks them on its timeline.
        self.changes: list[ConfigChange] = []

    def _start(self, config: ServerConfig) -> None:
        runner_class = ThreadRunner if self.isolation == "thread" else ProcessRunner
        namespace = self.path.namespace if self.path is not None else None
        runner = runner_class(config, self._router, namespace, self._app, self._lifespan)
        self.port = runner.start()
        self._runner = runner

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def url(self) -> str:
        return format_url(self.host, self.port, self.config.scheme)

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def pids(self) -> tuple[int, ...]:
        """The worker processes' ids (isolation="process"), e.g. to pin them to cores; empty
        for a server in a thread of this process."""
        runner = self._runner
        return runner.pids if isinstance(runner, ProcessRunner) else ()

    def stats(self) -> dict[str, Any]:
        """Counters since the listener started: requests, connections, bytes, errors by kind."""
        return self._require_running().stats()

    def worker_stats(self) -> list[dict[str, Any]]:
        """The same counters for each worker process, in worker order (one entry for a server
        in a thread): how evenly ``balance`` spread the connections and requests."""
        runner = self._require_running()
        return runner.worker_stats() if isinstance(runner, ProcessRunner) else [runner.stats()]

    def hiccups(self, since_ns: int = 0) -> np.ndarray:
        """The hiccup meter's series (``hiccup_meter`` on): each tick of the server's loop since
        ``since_ns`` (perf_counter_ns, the clock of a run's samples) and how late it woke, every
        worker's merged in time order (lab/resources.py's meter; figures in lab/measure/hiccup.py).
        Empty while the meter is off; a listener re-created by a reconfigure starts a new one."""
        return self._require_running().hiccups(since_ns)

    def reconfigure(self, **changes: Any) -> ServerConfig:
        """Apply new settings; the listener is re-created only when a setting needs it.

        Each knob declares where it applies (lab/http/knobs.py: ``when_table`` renders the
        table, as in docs/live.md): socket knobs at once to every open connection and to new
        ones, HTTP knobs from each connection's next request, listener knobs by re-creating the
        listener, which keeps the port unless ``port`` is among the changes. Each changed knob
        is appended to :attr:`changes` with its time.
        """
        runner = self._require_running()
        new_config = self.config.replace(**changes)
        changed = changed_knobs(self.config, new_config)
        if not changed:
            return self.config
        if self.isolation == "thread" and new_config.workers > 1:
            raise ConfigError("workers", "more than one worker needs isolation='process'")
        if self.path is not None and new_config.host != self.config.host:
            raise ConfigError("host", f"the server listens on its emulated path's address "
                              f"({self.config.host}); start another server to listen elsewhere")
        if new_config.tls and set(TLS_CONTEXT_KNOBS).intersection(changed):
            server_tls_context(new_config)  # a bad certificate is refused here, nothing changed
        if restart_knobs(type(new_config)).intersection(changed):
            self._restart(new_config, keep_port="port" not in changes)
        else:
            runner.apply(new_config)
        self.config = new_config
        # Stamped once applied: from here on every open connection has it (socket knobs).
        applied_ns = perf_counter_ns()
        self.changes.extend(ConfigChange(applied_ns, name, getattr(new_config, name)) for name in changed)
        return new_config

    def _restart(self, new_config: ServerConfig, keep_port: bool) -> None:
        old_port = self.port
        self._stop_runner(restarting=True)
        if keep_port and new_config.host == self.config.host:
            try:
                self._start(new_config.replace(port=old_port))
                return
            except OSError as error:
                if error.errno != errno.EADDRINUSE or new_config.port != 0:
                    raise
        self._start(new_config)

    def stop(self) -> None:
        """Close the listener and every connection; the port is free when this returns.
        An emulated path in front of the server is removed too."""
        self._stop_runner()
        if self.path is not None:
            self.path.stop()

    def _stop_runner(self, restarting: bool = False) -> None:
        if self._runner is not None:
            self._runner.stop(restarting)
            self._runner = None

    def _require_running(self) -> ThreadRunner | ProcessRunner:
        if self._runner is None:
            raise ServerError("the server is not running (it was stopped)")
        return self._runner

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<ServerHandle {state} isolation={self.isolation}>"


def start_server(config: ServerConfig | None = None, *, isolation: Isolation = "thread",
                 router: Router | str | None = None, path: Path | str | None = None,
                 app: AsgiApp | str | None = None, lifespan: Lifespan = "auto",
                 **changes: Any) -> ServerHandle:
    """Start a server and return once it is listening.

    ``config`` defaults to ``ServerConfig()``; keyword arguments change single knobs, e.g.
    ``start_server(nodelay=False, split_writes=True)``. ``router`` is a Router (thread only)
    or ``"module:function"``; the default serves the demo routes (lab/http/demo_routes.py).
    ``path`` (a :class:`~lab.netpath.Path` or its text, ``"delay=20ms loss=1%"``) puts an
    emulated network path between this namespace and the server (root or CAP_NET_ADMIN).
    ``app`` (an ASGI 3 app, thread only, or ``"module:attribute"``) is served in place of the
    routes, every knob applying to it as to them; ``lifespan`` is ``"auto"`` (run the app's
    startup and shutdown if it speaks the lifespan protocol), ``"on"`` or ``"off"``, as uvicorn's.
    """
    if isolation == "process":
        refuse_when_imported_by_a_new_process("a server in its own processes")
    config = config or ServerConfig()
    if changes:
        config = config.replace(**changes)
    spec = Path.coerce(path)
    emulated = start_path(spec) if spec is not None else None
    try:
        if emulated is not None:
            config = config.replace(host=emulated.server_address)
        handle = ServerHandle(config, isolation, router, emulated, app, lifespan)
        handle._start(config)
    except BaseException:
        if emulated is not None:
            emulated.stop()
        raise
    return handle
