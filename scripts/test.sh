#!/usr/bin/env bash
# Installs what is needed, builds everything and runs the whole test suite.
#   KEEL_SIM_SEEDS=N        seeds the simulator runs (default: the CI set)
#   KEEL_WAL_CRASH_SEEDS=N  crash-consistency workloads of the WAL test
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd "${KEEL_BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)" "$@"
