#!/usr/bin/env bash
# Re-resolves requirements.lock: the exact versions of the lab's packages, its development tools and
# pip/setuptools, for every supported Python (3.11, 3.12, 3.13 resolve in one universal file, with
# markers where a package's newest release drops 3.11). scripts/setup.sh installs from it, so every
# machine gets what CI tested. Run it on purpose, then run the tests on every Python
# (scripts/test-all-pythons.sh) and commit the lock with what changed:
#   bash scripts/lock.sh                        add what pyproject.toml asks for, keep every other pin
#   bash scripts/lock.sh --upgrade-package NAME move one package to its newest release
#   bash scripts/lock.sh --upgrade              move everything
set -euo pipefail
cd "$(dirname "$0")/.."
uv_version=0.13.8
tools=.venv-lock
if [ ! -x "$tools/bin/uv" ] || ! "$tools/bin/uv" --version | grep -q " $uv_version"; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "uv==$uv_version" 2>&1 | grep -v "is ignored" || true
fi
# pip and setuptools are pinned too: setup.sh installs them first and builds the lab with them.
printf 'pip\nsetuptools>=68\n' > "$tools/installers.in"
"$tools/bin/uv" pip compile pyproject.toml "$tools/installers.in" --extra dev --universal \
  --python-version 3.11 --custom-compile-command "bash scripts/lock.sh" --quiet \
  -o requirements.lock "$@"
echo "lock: requirements.lock written; check it with: bash scripts/test-all-pythons.sh"
