#!/usr/bin/env bash
# Creates .venv from requirements.lock when it is missing or stale; prints the venv's python path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.lock-sha256"
want=$(cd "$root" && sha256sum requirements.lock setup.py pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"; exit 0
fi

is_py310() {  # a pyenv shim can be on PATH yet refuse to run, so ask the interpreter itself
  "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1
}

find_py310() {
  local c
  for c in "${MSREC_PYTHON:-}" "$(command -v python3.10 2>/dev/null)"; do
    [ -n "$c" ] && is_py310 "$c" && { echo "$c"; return 0; }
  done
  local roots=("$HOME/.pyenv")
  command -v pyenv >/dev/null 2>&1 && roots=("$(pyenv root)" "${roots[@]}")
  for r in "${roots[@]}"; do
    for c in "$r"/versions/3.10.*/bin/python; do
      [ -x "$c" ] && is_py310 "$c" && { echo "$c"; return 0; }
    done
  done
  return 1
}

py=$(find_py310) || {
  echo "msrec needs Python 3.10 (the TFX 1.16 stack has no wheels for 3.11+)." >&2
  echo "Install it (e.g. 'pyenv install 3.10') or point MSREC_PYTHON at a python3.10." >&2
  exit 1
}
echo "bootstrap: creating $venv with $py from requirements.lock" >&2
rm -rf "$venv"
if command -v uv >/dev/null 2>&1; then
  uv venv -q -p "$py" "$venv" >&2
  uv pip install -q -p "$venv/bin/python" -r "$root/requirements.lock" >&2
  uv pip install -q -p "$venv/bin/python" --no-deps -e "$root" >&2
else
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$root/requirements.lock" >&2
  "$venv/bin/python" -m pip install -q --no-deps -e "$root" >&2
fi
echo "$want" > "$stamp"
echo "$venv/bin/python"
