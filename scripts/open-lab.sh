#!/usr/bin/env bash
# Sets up the lab and opens JupyterLab on notebooks/ (the quickstart first), on 127.0.0.1 only.
# Extra arguments go to `jupyter lab` (e.g. --no-browser, --port 8899).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd notebooks
first=01-quickstart.ipynb
[ -f "$first" ] || first=""
as_root=()
[ "$(id -u)" = 0 ] && as_root=(--allow-root)  # JupyterLab refuses root without it (containers)
exec "../${LAB_VENV:-.venv}/bin/jupyter" lab --ip=127.0.0.1 "${as_root[@]}" "$@" $first
