#!/usr/bin/env bash
# Configures (once) and builds keel with CMake + Ninja into ./build.
# Usage: scripts/build.sh [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${KEEL_BUILD_DIR:-build}"
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}"
fi
ninja -C "$build_dir" "$@"
