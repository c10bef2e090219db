#!/usr/bin/env bash
# Installs everything the lab needs into ./.venv (and, with --system, the Debian packages the
# tests and benchmarks drive: nginx, wrk, Chromium). Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system=0
for arg in "$@"; do
  case "$arg" in
    --system) want_system=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

if [ "$want_system" = 1 ]; then
  missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
echo "setup: installing Python packages into .venv"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# setuptools warns about editable installs on every run (UserWarning); nothing in it is actionable.
PYTHONWARNINGS=ignore::UserWarning .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import lab, uvloop, httptools, numpy, matplotlib, ipywidgets" \
  || { echo "setup: the Python packages did not install" >&2; exit 1; }
# The head scanner is optional to install (pip goes on without a compiler), so say it here,
# where the cause can still be read, rather than leave a slower server to be found later.
.venv/bin/python -c "import lab.http._headscan" 2>/dev/null \
  || echo "setup: lab/http/_headscan.c was not compiled (it needs gcc and Python's headers):" \
          "the server parses every request head with httptools' callbacks, about 25 % slower" >&2
