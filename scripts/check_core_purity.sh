#!/usr/bin/env bash
# The consensus core must stay a pure state machine: nothing under src/raft/
# may include threads, clocks, files, sockets or a random source of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='#include *<(thread|mutex|shared_mutex|condition_variable|future|atomic|chrono|ctime|time\.h|random|fstream|cstdio|stdio\.h|filesystem|unistd\.h|fcntl\.h|sys/.*|netinet/.*|arpa/.*|asio.*|spdlog/.*)>'
if grep -rnE "$forbidden" src/raft; then
  echo "core purity: FAILED: the includes above do not belong in src/raft" >&2
  exit 1
fi
if grep -rnE '\b(std::rand|rand\(\)|srand|random_device|std::this_thread|steady_clock|system_clock)\b' src/raft; then
  echo "core purity: FAILED: hidden randomness, clock or thread use in src/raft" >&2
  exit 1
fi
echo "core purity: src/raft includes no threads, clocks, files, sockets or randomness"
