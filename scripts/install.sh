#!/usr/bin/env bash
# Set up onnxtopo in a virtual environment (default .venv, or $VENV), without root.
#
# dionysus 2.2.3 ships no wheels and needs Boost >= 1.78 headers to build, which most systems'
# packages do not provide. The headers come from PyPI's boost-headers package, installed into a
# temporary directory used only for that build. Everything else is plain pip: the package with its
# test extra (pytest, hypothesis, ruff for `make test`'s lint, the optional back ends). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import dionysus" 2>/dev/null; then
    echo "onnxtopo setup: building dionysus 2.2.3 (a few minutes, once)" >&2
    boost=$(mktemp -d)
    trap 'rm -rf "$boost"' EXIT
    "${pip[@]}" install --target "$boost" boost-headers
    include="$boost/boost_headers/include"
    [ -d "$include/boost" ] || { echo "onnxtopo setup: no Boost headers found in $include" >&2; exit 1; }
    CPLUS_INCLUDE_PATH="$include${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}" \
    CMAKE_ARGS="-DBoost_INCLUDE_DIR=$include ${CMAKE_ARGS:-}" \
        "${pip[@]}" install "dionysus==2.2.3"
fi
"${pip[@]}" install -e ".[test]"
