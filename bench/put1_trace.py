#!/usr/bin/env python3
"""Where put 1/1's time goes, by thread: a scheduler trace of one run.

Starts a three-member keel cluster on loopback (compare.py's settings),
runs `keel-bench put --conns 1 --clients 1` against the leader under
`perf sched record`, and prints from `perf sched timehist`:

  - per put, each busy thread's CPU time and its time runnable but
    waiting for a CPU (the scheduler delay), named by member and role;
  - per put, the CPUs' idle time (waiting on the disk, mostly);
  - the client's waits longer than --stall-ms, with when they began: the
    disk's stalls show up here.

Needs perf (Debian: linux-perf) and root (or perf_event_paranoid <= -1).

Usage:
  /usr/bin/python3 bench/put1_trace.py [--total 3000] [--heartbeat-ms 100]
"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

LINE = re.compile(r"\s*([\d.]+)\s+\[(\d+)\]\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def thread_names(members, leader) -> dict:
    """tid -> a readable name ("leader tid 123", "follower 2 tid 456")."""
    names = {}
    n = 0
    for m in members:
        role = "leader" if m is leader else f"follower {n + 1}"
        if m is not leader:
            n += 1
        for t in Path(f"/proc/{m.proc.pid}/task").iterdir():
            names[t.name] = f"{role} tid {t.name}"
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keel", default=str(compare.REPO / "build" / "src" / "cmd" / "keel"))
    ap.add_argument("--bench", default=str(compare.REPO / "build" / "bench" / "keel-bench"))
    ap.add_argument("--total", type=int, default=3000)
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    ap.add_argument("--stall-ms", type=float, default=3.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="keel-put1-trace-") as tmp:
        root = Path(tmp)
        settings = {"heartbeat_ms": args.heartbeat_ms,
                    "election_ms": 10 * args.heartbeat_ms,
                    "snapshot_count": 100000, "quota_bytes": 8 << 30}
        c = compare.Cluster("keel", args.keel, root, settings)
        c.start()
        try:
            leader = c.leader()
            bench = [args.bench, "--endpoints", leader.endpoint, "--conns", "1",
                     "--clients", "1", "--no-progress", "put", "--key-size", "8",
                     "--val-size", "256", "--key-space", "100000"]
            # Warm-up, untraced: connections, first allocations.
            subprocess.run([*bench[:7], "--total", "500", *bench[7:]],
                           check=True, capture_output=True)
            names = thread_names(c.members, leader)
            data = root / "sched.data"
            run = subprocess.run(
                ["perf", "sched", "record", "-o", str(data), "--",
                 *bench[:7], "--total", str(args.total), *bench[7:]],
                capture_output=True, text=True)
            if run.returncode != 0:
                print(run.stderr, file=sys.stderr)
                return 1
            print("keel-bench:", " ".join(
                l for l in run.stdout.splitlines() if l.startswith(("put:", "latency"))))
            hist = subprocess.run(["perf", "sched", "timehist", "-i", str(data)],
                                  capture_output=True, text=True).stdout
        finally:
            c.stop()

    run_ms = collections.defaultdict(float)
    delay_ms = collections.defaultdict(float)
    stalls = collections.defaultdict(list)  # keel-bench tid -> waits
    bench_run = collections.defaultdict(float)
    first = last = None
    for line in hist.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t, _cpu, task, wait, delay, ran = m.groups()
        t = float(t)
        first = t if first is None else first
        last = t
        tid = re.search(r"\[(\d+)", task)
        if "idle" in task:
            key = "idle (both CPUs)"
        elif "keel-bench" in task:
            key = "keel-bench"
            bench_run[tid.group(1)] += float(ran)
            if float(wait) > args.stall_ms:
                stalls[tid.group(1)].append((t - first, float(wait)))
        elif tid and tid.group(1) in names:
            key = names[tid.group(1)]
        else:
            key = "other: " + task.split("[")[0]
        run_ms[key] += float(ran)
        delay_ms[key] += float(delay)
    puts = args.total
    print(f"per put ({puts} puts, {last - first:.2f} s traced), µs:")
    print(f"  {'thread':34s} {'CPU':>8s} {'waited for a CPU':>17s}")
    for key in sorted(run_ms, key=lambda k: -run_ms[k]):
        cpu_us = run_ms[key] * 1000 / puts
        if cpu_us < 5:
            continue
        print(f"  {key:34s} {cpu_us:8.1f} {delay_ms[key] * 1000 / puts:17.1f}")
    # The client's busy thread (its others wait for the whole run).
    client = max(bench_run, key=bench_run.get) if bench_run else None
    waits = stalls.get(client, [])
    print(f"client waits over {args.stall_ms} ms: {len(waits)}")
    for at, wait in waits:
        print(f"  at {at * 1000:9.1f} ms: {wait:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
