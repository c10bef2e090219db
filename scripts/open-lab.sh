#!/usr/bin/env bash
# Sets up the lab and opens JupyterLab on my-notebooks/ (the quickstart first), on 127.0.0.1 only.
# my-notebooks/ holds working copies of notebooks/ (made once, git-ignored): JupyterLab saves
# outputs into the notebooks it opens, and in notebooks/ they would leave the repository
# modified and every record saying "(uncommitted changes)" (lab/notebook/working_copy.py).
# Extra arguments go to `jupyter lab` (e.g. --no-browser, --port 8899).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="$PWD/${LAB_VENV:-.venv}"
copies="${LAB_NOTEBOOK_COPIES:-my-notebooks}"
"$venv/bin/python" -m lab.notebook.working_copy notebooks "$copies"
cd "$copies"
first=01-quickstart.ipynb
[ -f "$first" ] || first=""
as_root=()
[ "$(id -u)" = 0 ] && as_root=(--allow-root)  # JupyterLab refuses root without it (containers)
exec "$venv/bin/jupyter" lab --ip=127.0.0.1 "${as_root[@]}" "$@" $first
