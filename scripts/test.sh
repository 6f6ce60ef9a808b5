#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them.
#   bash scripts/test.sh [pytest args...]
# Debian packages (chromium for the browser tests, redis-server for the
# scale-out tests) come from apt-get, Python
# packages go into ./.venv; the compliance test uses ../shared/tools/wstest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]} with apt-get"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
# (a stale build/ from an earlier layout would put removed modules into the wheel)
rm -rf build
.venv/bin/python -m pip install -q --disable-pip-version-check ".[test]"
# Write the plugin cache now, as the installing user (see docs/operations.md).
.venv/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

# socket.io-client from npm for the Socket.IO end-to-end tests (tests/sio),
# pinned by its package-lock.json; node_modules is not committed.
[[ -d tests/sio/node_modules ]] || npm ci --prefix tests/sio --no-audit --no-fund

# The type checker first (configured in setup.cfg): a type error fails CI.
.venv/bin/python -m mypy --config-file setup.cfg

mkdir -p test-artifacts
exec .venv/bin/python -m pytest "$@"
