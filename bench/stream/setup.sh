#!/usr/bin/env bash
# Create .bench/stream: a venv with Feast 0.67.0 (its Redis extra) and the Kafka clients the harness
# can use (confluent-kafka, the default; kafka-python), all from PyPI.
# Idempotent: does nothing if those exact versions are already importable there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/.bench/stream"
PKGS=("feast[redis]==0.67.0" "confluent-kafka==2.16.2" "kafka-python==3.0.12")
want="feast=0.67.0 confluent-kafka=2.16.2 kafka-python=3.0.12"
have() {
  "$VENV/bin/python" -c 'import importlib.metadata as m
print(" ".join(f"{n}={m.version(n)}" for n in ("feast", "confluent-kafka", "kafka-python")))' 2>/dev/null
}
if [ -x "$VENV/bin/python" ] && [ "$(have)" = "$want" ]; then
  echo "$want already in $VENV"; exit 0
fi
mkdir -p "$ROOT/.bench"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "${PKGS[@]}"
have
