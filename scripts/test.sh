#!/usr/bin/env bash
# Sets up the lab (Python packages and the Debian packages the tests drive), then runs the
# whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system
.venv/bin/ruff check .
.venv/bin/python -m mypy lab  # strict, configured in pyproject.toml
exec .venv/bin/python -m pytest "$@"
