"""Peer HTTP servers the lab compares itself against, each in its own process on 127.0.0.1.

    from lab.peers.servers import start_peer
    from lab.peers.wrk import run_wrk

    with start_peer("nginx", cores=[0]) as nginx:
        result = run_wrk(nginx.fast_url, connections=50, duration_s=5, cores=[1])

Every peer answers ``GET /`` and ``GET /fast`` with the 2-byte body ``OK``, keeps connections
alive, and is started only once it answers. ``start_peer`` returns a :class:`Peer`, which is
its own context manager; ``stop()`` ends the process and waits for it.

| name | what runs |
| --- | --- |
| ``lab`` | ``python -m lab serve`` (extra flags pass through, e.g. ``["--workers", "2"]``) |
| ``nginx`` | Debian's nginx, one process (``master_process off``), config in a temp folder |
| ``uvicorn`` | uvicorn ``--http httptools --loop uvloop`` with a raw ASGI app (lab/peers/apps.py) |
| ``node`` | Node.js's ``http`` module (lab/peers/assets/node_http.js) |
| ``express`` | Express, installed with npm into a cache folder on first use |
| ``uvicorn-ws`` | uvicorn as above, ``--ws auto`` (websockets' Sans-I/O), echo on ``/ws/echo`` |
| ``uvicorn-ws-legacy`` | the same with ``--ws websockets`` (the library's older asyncio implementation) |
| ``node-ws`` | Node's ``ws`` package, echo on ``/ws/echo`` (assets/node_ws.js), installed like Express |
| ``lab-asgi`` | ``python -m lab serve --app`` with the raw ASGI app uvicorn runs (lab/peers/apps.py) |
| ``lab-starlette`` | the same with a Starlette app (lab/peers/starlette_app.py) |
| ``uvicorn-starlette`` | uvicorn as above with that Starlette app |
| ``granian`` | granian ``--interface asgi``, one worker, uvloop, with the raw ASGI app |
| ``granian-starlette`` | the same with the Starlette app |
| ``lab-tls`` | ``python -m lab serve --tls`` with the lab's ECDSA P-256 certificate (lab/tls.py) |
| ``nginx-tls`` | nginx as above over TLS 1.2/1.3, same certificate, session cache and tickets on |
| ``nginx-tls-nocache`` | the same with ``ssl_session_cache off`` and ``ssl_session_tickets off`` |
| ``uvicorn-tls`` | uvicorn as above with ``--ssl-certfile``/``--ssl-keyfile``, same certificate |

The TLS peers answer on ``https://`` (:attr:`Peer.url`) with one certificate, the lab's
(``lab.tls.server_certificate()``), so that a comparison is of servers, not of certificates.

The WebSocket peers (and ``lab``) answer ``/ws/echo`` with permessage-deflate off.

A peer that cannot run here (binary missing, npm failing) raises :class:`PeerUnavailable`, so
tests and notebooks can skip on it; one that starts and then dies or never answers raises
:class:`PeerError` with what the process printed.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from lab import tls
from lab.errors import ConfigError, PeerError, PeerUnavailable
from lab.peers.bare import READY_LINE as BARE_READY_LINE
from lab.peers.pinning import Cores, pinned_command

LOOPBACK = "127.0.0.1"
PEER_NAMES = ("lab", "nginx", "uvicorn", "node", "express", "uvicorn-ws", "uvicorn-ws-legacy", "node-ws",
              "bare-protocol", "bare-buffered", "lab-asgi", "lab-starlette", "uvicorn-starlette",
              "granian", "granian-starlette", "lab-tls", "nginx-tls", "nginx-tls-nocache", "uvicorn-tls")
TLS_PEERS = ("lab-tls", "nginx-tls", "nginx-tls-nocache", "uvicorn-tls")
RAW_APP = "lab.peers.apps:ok_app"
STARLETTE_APP = "lab.peers.starlette_app:app"
WEBSOCKET_PEERS = ("lab", "uvicorn-ws", "uvicorn-ws-legacy", "node-ws")

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 1.0
PROBE_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 2000

NGINX_BINARY = "/usr/sbin/nginx"
# nginx's default (1000 since 1.19.10) would close every connection after 1000 requests while the
# other peers keep theirs: the comparison would measure reconnects for nginx alone.
NGINX_KEEPALIVE_REQUESTS = 1_000_000_000
NGINX_WORKER_CONNECTIONS = 4096
KEEPALIVE_IDLE_S = 60

EXPRESS_PACKAGE = "express@5"
DEFAULT_EXPRESS_DIR = Path.home() / ".cache" / "latency-lab" / "express"
WS_PACKAGE = "ws@8"
DEFAULT_NODE_WS_DIR = Path.home() / ".cache" / "latency-lab" / "node-ws"
NPM_TIMEOUT_S = 300.0

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# The folder that holds the lab package: peers started with `python -m` must import it.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
LAB_READY_LINE = "listening on "






@dataclass(frozen=True)
class Launch:
    """How to run one peer: the command, environment additions, and what marks it ready."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Printed once *every* process listens (the lab with --workers N announces after all
    # workers started); an answer from the first worker alone would skew the SO_REUSEPORT spread.
    ready_line: str | None = None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel's pick; a tiny race until used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind((host, 0))
        return int(probe_socket.getsockname()[1])


def probe(port: int, path: str = "/fast", *, timeout_s: float = PROBE_TIMEOUT_S,
          scheme: str = "http") -> tuple[int, bytes]:
    """One ``GET path`` on a fresh connection: (status, body); https trusts the lab's CA."""
    connection = (http.client.HTTPSConnection(LOOPBACK, port, timeout=timeout_s, context=tls.client_context())
                  if scheme == "https" else http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- the running peer ----------------------------------------------------------------------

_running: weakref.WeakSet[Peer] = weakref.WeakSet()


class Peer:
    """A running peer process. Use as a context manager, or call ``stop()``."""

    def __init__(self, name: str, port: int, process: subprocess.Popen[bytes],
                 workdir: tempfile.TemporaryDirectory[str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.scheme = "https" if name in TLS_PEERS else "http"
        self._process = process
        self._workdir = workdir
        self._log_path = log_path
        _running.add(self)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    @property
    def ws_echo_url(self) -> str:
        """The WebSocket echo of the peers in ``WEBSOCKET_PEERS``."""
        return f"ws://{LOOPBACK}:{self.port}/ws/echo"

    @property
    def fast_url(self) -> str:
        return f"{self.url}/fast"

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def output(self) -> str:
        """What the peer printed so far (stdout and stderr), for error messages."""
        with contextlib.suppress(OSError):
            return self._log_path.read_text(errors="replace")
        return ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and wait; SIGKILL the whole process group if it does not end in time."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # The leader is not reaped yet, so its group id cannot belong to anyone else.
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._workdir.cleanup()
        _running.discard(self)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Peer {self.name} {self.url} pid={self.pid} {state}>"


@atexit.register
def _stop_leftover_peers() -> None:
    """A notebook kernel that exits without stopping its peers must not leave them listening."""
    for peer in list(_running):
        peer.stop()


# --- launch recipes, one per peer ----------------------------------------------------------

def _python_env() -> dict[str, str]:
    """Make the subprocess import this very ``lab`` package, whatever its working directory."""
    paths = [str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(path for path in paths if path), "PYTHONUNBUFFERED": "1"}


def _lab_launch(port: int, workdir: Path) -> Launch:
    command = [sys.executable, "-m", "lab", "serve", "--host", LOOPBACK, "--port", str(port)]
    return Launch(command, env=_python_env(), ready_line=LAB_READY_LINE)


def _lab_tls_launch(port: int, workdir: Path) -> Launch:
    chain, key = tls.server_certificate()
    launch = _lab_launch(port, workdir)
    return dataclasses.replace(launch, command=[*launch.command, "--tls", "--cert", str(chain),
                                                "--key", str(key)])


def _lab_app_launch(port: int, workdir: Path, app: str) -> Launch:
    # --lifespan off, as uvicorn and granian are run: neither app has one.
    command = [sys.executable, "-m", "lab", "serve", "--host", LOOPBACK, "--port", str(port),
               "--app", app, "--lifespan", "off"]
    return Launch(command, env=_python_env(), ready_line=LAB_READY_LINE)


def _granian_launch(port: int, workdir: Path, app: str) -> Launch:
    if importlib.util.find_spec("granian") is None:
        raise PeerUnavailable(f"granian is not installed in {sys.executable}: install the dev extra")
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", LOOPBACK,
               "--port", str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
               "--no-ws", "--no-log", app]
    return Launch(command, env=_python_env())


def _uvicorn_launch(port: int, workdir: Path, *, app: str = RAW_APP,
                    extra: Sequence[str] = ()) -> Launch:
    for module in ("uvicorn", "httptools", "uvloop"):
        if importlib.util.find_spec(module) is None:
            raise PeerUnavailable(f"{module} is not installed in {sys.executable}: run bash scripts/setup.sh")
    command = [sys.executable, "-m", "uvicorn", app,
               "--host", LOOPBACK, "--port", str(port),
               "--http", "httptools", "--loop", "uvloop",
               "--lifespan", "off", "--no-access-log", "--log-level", "warning",
               "--timeout-keep-alive", str(KEEPALIVE_IDLE_S), *extra]
    return Launch(command, env=_python_env())


def _uvicorn_tls_launch(port: int, workdir: Path) -> Launch:
    chain, key = tls.server_certificate()
    return _uvicorn_launch(port, workdir, extra=["--ssl-certfile", str(chain), "--ssl-keyfile", str(key)])


def _uvicorn_ws_launch(port: int, workdir: Path, implementation: str) -> Launch:
    # Compression off, as the lab's default: the comparison is of framing, not of zlib.
    return _uvicorn_launch(port, workdir, app="lab.peers.apps:ws_echo_app",
                           extra=["--ws", implementation, "--ws-per-message-deflate", "false"])


def _bare_launch(port: int, workdir: Path, style: str) -> Launch:
    # lab/peers/bare.py: uvloop + httptools and nothing else, in one of asyncio's two read styles.
    command = [sys.executable, "-m", "lab.peers.bare", "--style", style,
               "--host", LOOPBACK, "--port", str(port)]
    return Launch(command, env=_python_env(), ready_line=BARE_READY_LINE)


def nginx_tls_lines(*, session_cache: bool) -> str:
    """nginx's TLS settings with the lab's certificate: the versions the lab serves by
    default, and resumption (its session cache and tickets) on or off."""
    chain, key = tls.server_certificate()
    resumption = ("    ssl_session_cache shared:SSL:10m;\n    ssl_session_tickets on;" if session_cache
                  else "    ssl_session_cache off;\n    ssl_session_tickets off;")
    return (f"    ssl_certificate {chain};\n    ssl_certificate_key {key};\n"
            f"    ssl_protocols TLSv1.2 TLSv1.3;\n{resumption}\n")


def nginx_config(port: int, workdir: Path, tls_lines: str | None = None) -> str:
    """One process serving ``OK``; every path nginx writes to lives in ``workdir``. With
    ``tls_lines`` (:func:`nginx_tls_lines`) it listens with TLS."""
    temp_kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = "\n".join(f"    {kind}_temp_path {workdir / kind};" for kind in temp_kinds)
    return f"""\
# Written by lab/peers/servers.py. One process does the work: no master, one worker's worth of loop.
daemon off;
master_process off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log stderr warn;

events {{
    worker_connections {NGINX_WORKER_CONNECTIONS};
}}

http {{
    access_log off;
    keepalive_requests {NGINX_KEEPALIVE_REQUESTS};
    keepalive_timeout {KEEPALIVE_IDLE_S}s;
{temp_paths}
{tls_lines or ""}
    server {{
        listen {LOOPBACK}:{port}{" ssl" if tls_lines else ""};
        default_type text/plain;
        location = / {{ return 200 "OK"; }}
        location = /fast {{ return 200 "OK"; }}
        location / {{ return 404 "not found\\n"; }}
    }}
}}
"""


def _nginx_binary() -> str:
    if Path(NGINX_BINARY).exists():
        return NGINX_BINARY
    found = shutil.which("nginx")
    if found is None:
        raise PeerUnavailable(f"nginx not found at {NGINX_BINARY} or on PATH: "
                              "install Debian's nginx-light package")
    return found


def _nginx_launch(port: int, workdir: Path, tls_lines: str | None = None) -> Launch:
    binary = _nginx_binary()
    config_path = workdir / "nginx.conf"
    config_path.write_text(nginx_config(port, workdir, tls_lines))
    # -e stderr: otherwise nginx opens the compiled-in /var/log/nginx/error.log before it reads
    # the config, and fails where that file is not writable.
    return Launch([binary, "-p", f"{workdir}/", "-c", str(config_path), "-e", "stderr"])


def _node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        raise PeerUnavailable("node not found on PATH: install Debian's nodejs package")
    return found


def _node_launch(port: int, workdir: Path) -> Launch:
    return Launch([_node_binary(), str(ASSETS_DIR / "node_http.js"), str(port)])


def ensure_express(directory: Path | None = None) -> Path:
    """The node_modules folder holding Express, installed with npm into ``directory`` first time.

    Raises PeerUnavailable (with npm's own words) when npm is missing or the install fails.
    """
    return _ensure_npm_package(EXPRESS_PACKAGE, directory or DEFAULT_EXPRESS_DIR)


def ensure_node_ws(directory: Path | None = None) -> Path:
    """The node_modules folder holding the ``ws`` package, installed like Express."""
    return _ensure_npm_package(WS_PACKAGE, directory or DEFAULT_NODE_WS_DIR)


def _ensure_npm_package(package: str, directory: Path) -> Path:
    name = package.rsplit("@", 1)[0]
    modules = directory / "node_modules"
    if (modules / name / "package.json").exists():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable(f"npm not found on PATH: install Debian's npm package to run the {name} peer")
    directory.mkdir(parents=True, exist_ok=True)
    # Two test processes (or a notebook and a benchmark) may ask at once: install once.
    with open(directory / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (modules / name / "package.json").exists():
            _npm_install(npm, package, directory)
    return modules


def _npm_install(npm: str, package: str, directory: Path) -> None:
    manifest = directory / "package.json"
    if not manifest.exists():
        # Without its own package.json npm walks up and installs into whatever project it finds.
        name = f"latency-lab-{directory.name}-peer"
        manifest.write_text(json.dumps({"name": name, "private": True}) + "\n")
    command = [npm, "install", package, "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        completed = subprocess.run(command, cwd=directory, capture_output=True, text=True,
                                   timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        raise PeerUnavailable(f"npm install {package} took over {NPM_TIMEOUT_S:.0f} s "
                              f"in {directory}") from error
    if completed.returncode != 0:
        said = (completed.stderr or completed.stdout)[-LOG_TAIL_CHARS:]
        raise PeerUnavailable(f"npm install {package} failed in {directory} "
                              f"(exit {completed.returncode}):\n{said}")


def _express_launch(port: int, workdir: Path, express_dir: Path | None) -> Launch:
    node = _node_binary()
    modules = ensure_express(express_dir)
    return Launch([node, str(ASSETS_DIR / "express_http.js"), str(port)], env={"NODE_PATH": str(modules)})


def _node_ws_launch(port: int, workdir: Path) -> Launch:
    node = _node_binary()
    modules = ensure_node_ws()
    return Launch([node, str(ASSETS_DIR / "node_ws.js"), str(port)], env={"NODE_PATH": str(modules)})


# --- starting ------------------------------------------------------------------------------

def _recipe(name: str, express_dir: Path | None) -> Callable[[int, Path], Launch]:
    recipes: dict[str, Callable[[int, Path], Launch]] = {
        "lab": _lab_launch,
        "nginx": _nginx_launch,
        "uvicorn": _uvicorn_launch,
        "node": _node_launch,
        "express": lambda port, workdir: _express_launch(port, workdir, express_dir),
        "uvicorn-ws": lambda port, workdir: _uvicorn_ws_launch(port, workdir, "auto"),
        "uvicorn-ws-legacy": lambda port, workdir: _uvicorn_ws_launch(port, workdir, "websockets"),
        "node-ws": _node_ws_launch,
        "bare-protocol": lambda port, workdir: _bare_launch(port, workdir, "protocol"),
        "bare-buffered": lambda port, workdir: _bare_launch(port, workdir, "buffered"),
        "lab-asgi": lambda port, workdir: _lab_app_launch(port, workdir, RAW_APP),
        "lab-starlette": lambda port, workdir: _lab_app_launch(port, workdir, STARLETTE_APP),
        "uvicorn-starlette": lambda port, workdir: _uvicorn_launch(port, workdir, app=STARLETTE_APP),
        "granian": lambda port, workdir: _granian_launch(port, workdir, RAW_APP),
        "granian-starlette": lambda port, workdir: _granian_launch(port, workdir, STARLETTE_APP),
        "lab-tls": _lab_tls_launch,
        "nginx-tls": lambda port, workdir: _nginx_launch(port, workdir, nginx_tls_lines(session_cache=True)),
        "nginx-tls-nocache": lambda port, workdir: _nginx_launch(
            port, workdir, nginx_tls_lines(session_cache=False)),
        "uvicorn-tls": _uvicorn_tls_launch,
    }
    if name not in recipes:
        raise ConfigError("peer", f"unknown name {name!r}; choose one of {', '.join(PEER_NAMES)}")
    return recipes[name]


def start_peer(name: str, *, port: int | None = None, cores: Cores | None = None,
               extra_args: Sequence[str] = (), ready_timeout_s: float = READY_TIMEOUT_S,
               express_dir: Path | None = None) -> Peer:
    """Start peer ``name`` on 127.0.0.1 and return once it answers ``GET /fast`` with ``OK``.

    ``port``: None picks a free one. ``cores``: pin with ``taskset -c`` (None: unpinned).
    ``extra_args``: appended to the peer's command line (e.g. lab flags ``["--workers", "2"]``).
    ``express_dir``: where npm installs Express (default ~/.cache/latency-lab/express).
    """
    recipe = _recipe(name, express_dir)
    chosen_port = port if port is not None else free_port()
    workdir = tempfile.TemporaryDirectory(prefix=f"latency-lab-{name}-")
    try:
        launch = recipe(chosen_port, Path(workdir.name))
        command = pinned_command([*launch.command, *extra_args], cores)
        peer = _spawn(name, chosen_port, command, launch, workdir)
    except BaseException:
        workdir.cleanup()
        raise
    try:
        _wait_until_ready(peer, launch.ready_line, ready_timeout_s)
    except BaseException:
        peer.stop()
        raise
    return peer


def _spawn(name: str, port: int, command: list[str], launch: Launch,
           workdir: tempfile.TemporaryDirectory[str]) -> Peer:
    log_path = Path(workdir.name) / "output.log"
    # A file, not a pipe: nobody reads a pipe during a benchmark, and a full pipe stalls the peer.
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=workdir.name, env={**os.environ, **launch.env},
            # Its own session: a Ctrl-C in the terminal reaches us, and we stop the peer in order.
            start_new_session=True)
    return Peer(name, port, process, workdir, log_path)


def _wait_until_ready(peer: Peer, ready_line: str | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    problem: str | None = "no answer yet"
    while True:
        if not peer.running:
            raise PeerError(f"{peer.name} exited (code {peer._process.returncode}) before answering "
                            f"on port {peer.port}; it printed:\n{_tail(peer.output())}")
        if ready_line is None or ready_line in peer.output():
            problem = _answer_problem(peer.port, peer.scheme)
            if problem is None:
                return
        else:
            problem = f"has not printed {ready_line.strip()!r} yet"
        if time.monotonic() >= deadline:
            raise PeerError(f"{peer.name} did not answer GET /fast on port {peer.port} within "
                            f"{timeout_s:g} s ({problem}); it printed:\n{_tail(peer.output())}")
        time.sleep(PROBE_INTERVAL_S)


def _answer_problem(port: int, scheme: str = "http") -> str | None:
    """None when ``GET /fast`` answers ``200 OK``; otherwise what went wrong."""
    try:
        status, body = probe(port, scheme=scheme)
    except (OSError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}"
    if status != 200 or body != b"OK":
        return f"answered {status} {body[:80]!r}"
    return None


def _tail(text: str) -> str:
    return text[-LOG_TAIL_CHARS:] if text.strip() else "(nothing)"

