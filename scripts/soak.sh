#!/usr/bin/env bash
# The fault harness as a soak (docs/reliability.md, "How to run the harness"):
#   bash scripts/soak.sh --topology single|redis2|workers2|all --duration SECONDS [--seed N]
#                        [--profile soak|ci] [--artifacts DIR]
# Sets up ./.venv as scripts/test.sh does (the daemon under test is the
# INSTALLED one: this reinstalls it), then runs `python -m tests.chaos` and prints
# its table. Exit status 0 when no invariant was violated, 1 otherwise.
# --profile ci replays a test_chaos run (every fault once) with its seed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]})); then
  echo "soak.sh: installing ${need[*]} with apt-get"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check ".[test]"
.venv/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
[[ -d tests/sio/node_modules ]] || npm ci --prefix tests/sio --no-audit --no-fund

mkdir -p test-artifacts/chaos
exec .venv/bin/python -m tests.chaos "$@"
