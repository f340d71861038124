#!/usr/bin/env bash
# Installs what is needed, builds keel and runs one member with default
# settings (like `etcd` with no flags). Extra arguments go to keel.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh keel
exec ./"${KEEL_BUILD_DIR:-build}"/src/cmd/keel "$@"
