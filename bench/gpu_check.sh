#!/bin/sh
# The GPU check (issue 18): gradlint's runtime side on CUDA, in one command and one table, within
# five minutes. Run it from anywhere, with the Python that has gradlint and torch installed:
#
#     bench/gpu_check.sh                  # uses $PYTHON, else .venv/bin/python, else python3
#
# Without CUDA it prints one line and exits 1. What it checks: bench/gpu_check.py.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$root/bench/gpu_check.py" "$@"
