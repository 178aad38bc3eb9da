#!/usr/bin/env bash
# Create .bench/feast: a venv with Feast 0.67.0 (from PyPI) and its Redis extra.
# Idempotent: does nothing if that exact version is already importable there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/.bench/feast"
WANT=0.67.0
if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("feast"))' 2>/dev/null)" = "$WANT" ]; then
  echo "feast $WANT already in $VENV"; exit 0
fi
mkdir -p "$ROOT/.bench"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "feast[redis]==$WANT"
"$VENV/bin/feast" version
