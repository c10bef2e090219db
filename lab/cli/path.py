"""``python -m lab path 'delay=20ms loss=1%' --to 127.0.0.1:8000``: an emulated network path in
front of a server the lab did not start (uvicorn, nginx, a Go or Node service on this machine),
until Ctrl-C or SIGTERM. It prints the address that reaches the server through the path;
``bench``, ``capacity`` and a browser use that address, and ``bench --save`` records the path.
"""

from __future__ import annotations

import argparse
import signal
import sys

from lab.netpath import start_path_to
from lab.netpath.spec import ALLOWED_FORM, OPTION, Path

WATCH_SECONDS = 0.5  # how often the helper processes are looked at while the path is up
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "path", help="an emulated network path in front of a server on this machine",
        description="Put an emulated network path (delay, jitter, loss, rate, reordering; "
                    "lab/netpath) in front of a server on this machine that the lab did not "
                    "start, and print the address that reaches it through the path. Stays up "
                    "until Ctrl-C or SIGTERM; needs root or CAP_NET_ADMIN.")
    # dest "emulate": a bad path text is reported under this argument's name (PATH)
    parser.add_argument(OPTION, metavar="PATH",
                        help=f"the path, e.g. '{ALLOWED_FORM}' (delay each way; any of them, in any "
                        "order)".replace("%", "%%"))
    parser.add_argument("--to", required=True, metavar="HOST:PORT",
                        help="the server to put behind the path, e.g. 127.0.0.1:8000")
    parser.add_argument("--port", type=int, default=None, metavar="N",
                        help="the port to reach it at through the path [default: the server's]")
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    spec = Path.parse(getattr(arguments, OPTION))
    front = start_path_to(spec, arguments.to, port=arguments.port)
    try:
        # Blocked before announcing: a caller may signal as soon as it reads the address.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        print(front.describe(), flush=True)
        print(f"through the path: {front.url} (Ctrl-C stops it)", flush=True)
        while signal.sigtimedwait(STOP_SIGNALS, WATCH_SECONDS) is None:
            if not front.running:
                print(f"lab: the path's relay (pid {front.path.relay_pid}) ended; the path is gone",
                      file=sys.stderr)
                return 1
        return 0
    finally:
        front.stop()
