#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them.
#   bash scripts/test.sh [pytest args...]
# Debian packages (chromium for the browser tests) come from apt-get, Python
# packages go into ./.venv; the compliance test uses ../shared/tools/wstest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]} with apt-get"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check ".[test]"
# Write the plugin cache now, as the installing user (see docs/operations.md).
.venv/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

mkdir -p test-artifacts
exec .venv/bin/python -m pytest "$@"
