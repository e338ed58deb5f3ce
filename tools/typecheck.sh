#!/usr/bin/env bash
# Type-check the package as installed: amcheck/ with storage/ and kernels/ mapped into it
# (mypy does not follow setuptools' package-dir mapping in a source checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree/amcheck"
for entry in amcheck/*; do ln -s "$PWD/$entry" "$tree/amcheck/"; done
ln -s "$PWD/storage" "$tree/amcheck/storage"
ln -s "$PWD/kernels" "$tree/amcheck/kernels"
cd "$tree" && exec "$OLDPWD/.venv/bin/python" -m mypy --config-file "$OLDPWD/pyproject.toml" -p amcheck
