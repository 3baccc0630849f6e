#!/usr/bin/env bash
# Create or reuse the venv, install the project with pinned dependencies, and the simulators.
set -euo pipefail
venv=${1:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
# torch==2.13.0 exactly: a CPU wheel of it is on local disk; other versions pull CUDA builds.
"$py" -m pip install -q "torch==2.13.0"
"$py" -m pip install -q -e ".[rtl,data,test]"
if ! command -v iverilog >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null
  else
    echo "install.sh: iverilog is missing; install it with: sudo apt-get install -y iverilog" >&2
  fi
fi
