#!/usr/bin/env bash
# Sets up the lab (Python packages and the Debian packages the tests drive), then runs the
# whole test suite. Extra arguments go to pytest. PYTHON picks the interpreter and LAB_VENV the
# folder, as in scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LAB_VENV:-.venv}
bash scripts/setup.sh --system
"$venv/bin/ruff" check .
"$venv/bin/python" -m mypy lab  # strict, configured in pyproject.toml
exec "$venv/bin/python" -m pytest "$@"
