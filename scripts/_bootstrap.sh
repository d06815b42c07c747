# Sourced by scripts/run and scripts/test: create .venv and install the given requirements file,
# skipping pip when the requirements have not changed since the last install.
set -euo pipefail
REQS="${1:-requirements.txt}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating virtualenv .venv ..." >&2
  "$PYTHON" -m venv .venv
fi
STAMP=".venv/.installed-$(basename "$REQS")"
WANT="$(cat requirements*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "Installing $REQS into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQS"
  echo "$WANT" > "$STAMP"
fi
export PATH="$PWD/.venv/bin:$PATH"
