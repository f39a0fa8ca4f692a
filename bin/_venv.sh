# shellcheck shell=bash
# Sourced by bin/run and bin/test: make .venv and keep it in step with the
# pinned requirements (reinstalls only when a requirements file changed).
# VENV_REQUIREMENTS names the set: requirements-dev.txt (the default: tests,
# linters) includes requirements-demo.txt (bin/run: the app and the demo
# endpoint), which includes requirements.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_REQUIREMENTS="${VENV_REQUIREMENTS:-requirements-dev.txt}"

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  PYTHON="${PYTHON:-}"
  if [ -z "$PYTHON" ]; then
    for candidate in python3 python3.13 python3.12 python3.11; do
      if command -v "$candidate" >/dev/null &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PYTHON="$candidate"
        break
      fi
    done
  fi
  if [ -z "$PYTHON" ]; then
    echo "sfnui needs Python 3.11 or newer: install it, or set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  echo "Creating .venv with $("$PYTHON" --version) ..." >&2
  "$PYTHON" -m venv "$ROOT/.venv"
fi

level() {
  case "$1" in
    requirements-dev.txt) echo 2 ;;
    requirements-demo.txt) echo 1 ;;
    *) echo 0 ;;
  esac
}
# (Python rather than sha256sum, which macOS lacks.)
hash="$("$ROOT/.venv/bin/python" -c '
import hashlib, sys
print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest()[:16])
' "$ROOT"/requirements.txt "$ROOT"/requirements-demo.txt "$ROOT"/requirements-dev.txt)"
wanted="$(level "$VENV_REQUIREMENTS")"
installed=-1
for stamp in "$ROOT"/.venv/.installed-"$hash"-*; do
  [ -e "$stamp" ] || continue
  have="${stamp##*-}"
  if [ "$have" -gt "$installed" ]; then installed="$have"; fi
done
if [ "$installed" -lt "$wanted" ]; then
  echo "Installing $VENV_REQUIREMENTS into .venv (pinned versions) ..." >&2
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$ROOT/$VENV_REQUIREMENTS" >&2
  rm -f "$ROOT"/.venv/.installed-* "$ROOT"/.venv/.requirements-*
  touch "$ROOT/.venv/.installed-$hash-$wanted"
fi
