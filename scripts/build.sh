#!/usr/bin/env bash
# Configures (once) and builds keel with CMake + Ninja into ./build.
# Usage: scripts/build.sh [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${KEEL_BUILD_DIR:-build}"
if [ ! -f "$build_dir/build.ninja" ]; then
  launcher=()
  # ccache, when installed, makes rebuilds in other checkouts (git
  # worktrees, clean clones) cheap; it is optional.
  if command -v ccache >/dev/null 2>&1; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}" "${launcher[@]}"
fi
ninja -C "$build_dir" "$@"
