#!/usr/bin/env bash
# Installs everything the lab needs into ./.venv (LAB_VENV names another folder; PYTHON another
# interpreter), at the versions in requirements.lock (and, with --system, the Debian packages the
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
  # benchmarks/fuzz_headscan.py builds the head scanner with clang's ASan and libFuzzer hooks.
  # Their runtimes are libclang-rt-dev, only a Recommends of clang, which --no-install-recommends
  # skips: a clang that cannot link an ASan program gets them too.
  if ! command -v clang >/dev/null 2>&1; then
    missing+=(clang libclang-rt-dev)
  elif ! echo 'int main(void) { return 0; }' | clang -fsanitize=address -x c - -o /dev/null 2>/dev/null; then
    missing+=(libclang-rt-dev)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

python=${PYTHON:-python3}
venv=${LAB_VENV:-.venv}
# PYTHON=python3.12 also finds a Python that pyenv has installed but not selected (its shim
# refuses the command then): the release check runs every installed Python this way.
if ! "$python" -c '' >/dev/null 2>&1; then
  found=""
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/*/bin/"$(basename "$python")"; do
      if [ -x "$candidate" ] && "$candidate" -c '' >/dev/null 2>&1; then found=$candidate; break; fi
    done
  fi
  [ -n "$found" ] || { echo "setup: PYTHON=$python does not run (not on PATH, nor installed by pyenv)" >&2; exit 2; }
  python=$found
fi
wanted=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$wanted" in
  3.11|3.12|3.13) ;;
  *) echo "setup: PYTHON=$python is Python $wanted; the lab supports 3.11, 3.12 and 3.13" >&2; exit 2 ;;
esac
if [ -x "$venv/bin/python" ]; then
  have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
  if [ "$have" != "$wanted" ]; then
    # The folder is the lab's own (nothing else is installed there), so it is made again.
    echo "setup: $venv has Python $have, PYTHON=$python is $wanted: making $venv again"
    rm -rf "$venv"
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv (Python $wanted)"
  "$python" -m venv "$venv"
fi
echo "setup: installing Python packages into $venv (the versions in requirements.lock)"
quiet() { grep -v "is ignored" || true; }  # this machine's pip warns about absent local indexes
"$venv/bin/python" -m pip install -q -c requirements.lock pip setuptools 2>&1 | quiet
# Built with the pinned setuptools (no isolated build that would fetch the newest); setuptools
# warns about editable installs on every run (UserWarning), nothing in it is actionable.
PYTHONWARNINGS=ignore::UserWarning "$venv/bin/python" -m pip install -q -c requirements.lock \
  --no-build-isolation -e '.[dev]' 2>&1 | quiet
"$venv/bin/python" -c "import lab, uvloop, httptools, numpy, matplotlib, ipywidgets" \
  || { echo "setup: the Python packages did not install" >&2; exit 1; }
# The head scanner is optional to install (pip goes on without a compiler), so say it here,
# where the cause can still be read, rather than leave a slower server to be found later.
"$venv/bin/python" -c "import lab.http._headscan" 2>/dev/null \
  || echo "setup: lab/http/_headscan.c was not compiled (it needs gcc and Python's headers):" \
          "the server parses every request head with httptools' callbacks, about 25 % slower" >&2
