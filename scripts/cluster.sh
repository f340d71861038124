#!/usr/bin/env bash
# Starts a local three-member keel cluster on loopback, like etcd's Procfile:
#   infra1: clients 127.0.0.1:2379,  peers 127.0.0.1:12380
#   infra2: clients 127.0.0.1:22379, peers 127.0.0.1:22380
#   infra3: clients 127.0.0.1:32379, peers 127.0.0.1:32380
# Data in ./cluster-data/infraN (kept across runs: a rerun resumes the
# cluster), logs in ./cluster-data/infraN.log. Ctrl-C stops all three.
# Extra arguments go to every member (e.g. --heartbeat-interval 50).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh keel
bin="./${KEEL_BUILD_DIR:-build}/src/cmd/keel"
mkdir -p cluster-data
cluster="infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  if [ "$i" = 1 ]; then client=2379; else client="${i}2379"; fi
  "$bin" --name "infra$i" --data-dir "cluster-data/infra$i" \
    --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-cluster "$cluster" --initial-cluster-token keel-local \
    --initial-cluster-state new "$@" >"cluster-data/infra$i.log" 2>&1 &
  pids+=($!)
done
echo "keel cluster: ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list"
wait
