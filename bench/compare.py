#!/usr/bin/python3
"""Side-by-side benchmark of etcd and keel on this machine, in one run.

Starts a three-member etcd cluster (Debian's etcd-server) and a three-member
keel cluster on loopback with the same settings (heartbeat, election timeout,
snapshot count, quota, fsync on, data under one directory on one disk), then
runs each workload of etcd's published benchmark with keel-bench against
both in turn, A B A B (etcd, keel, etcd, keel), so that drift on a shared
machine hits both. It prints one table (etcd, keel, keel/etcd), with each
server's peak RSS and CPU seconds, and writes:

  <out>/report.md    the report as Markdown
  <out>/report.json  every run's raw figures
  <out>/ratios.svg   keel/etcd ratios per workload (a chart)

It also measures, in the same run, the bounds the figures are held to: the
disk's write+fdatasync time (a 4 KiB append loop in a preallocated file, as
a WAL does) and the loopback TCP round trip.

Usage:
  /usr/bin/python3 bench/compare.py --quick          # a minute or two
  /usr/bin/python3 bench/compare.py                  # full (heavy: run late)
  /usr/bin/python3 bench/compare.py --quick --only put-1,range-l-100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- workloads


@dataclass
class Workload:
    name: str
    title: str
    args: list[str]  # keel-bench arguments (subcommand first)
    quick_total: int
    full_total: int
    endpoints: str = "leader"  # or "all"
    total_flag: str = "--total"


def workloads() -> list[Workload]:
    kv = ["--key-size", "8", "--val-size", "256", "--key-space", "100000"]
    c1 = ["--conns", "1", "--clients", "1"]
    c1000 = ["--conns", "100", "--clients", "1000"]
    return [
        Workload("put-1", "put, 1 conn 1 client", ["put", *kv, *c1], 300, 3000),
        Workload("put-1000", "put, 100 conns 1,000 clients, leader",
                 ["put", *kv, *c1000], 10000, 100000),
        Workload("put-1000-all", "put, 100 conns 1,000 clients, all members",
                 ["put", *kv, *c1000], 10000, 100000, endpoints="all"),
        Workload("range-l-1", "range linearizable, 1/1",
                 ["range", "--consistency", "l", *kv, *c1], 2000, 10000),
        Workload("range-s-1", "range serializable, 1/1",
                 ["range", "--consistency", "s", *kv, *c1], 2000, 10000),
        Workload("range-l-1000", "range linearizable, 100/1,000",
                 ["range", "--consistency", "l", *kv, *c1000], 20000, 100000),
        Workload("range-s-1000", "range serializable, 100/1,000",
                 ["range", "--consistency", "s", *kv, *c1000], 20000, 100000),
        Workload("txn-put", "txn-put, 100/1,000",
                 ["txn-put", *kv, *c1000], 10000, 100000),
        Workload("put-64k", "put 64 KiB values, 10/10",
                 ["put", "--key-size", "8", "--val-size", "65536",
                  "--key-space", "1000", "--conns", "10", "--clients", "10"],
                 200, 2000),
        Workload("watch", "watch: put-to-event delay",
                 ["watch", "--put-rate", "100"], 0, 0),
        Workload("lease-keepalive", "lease keepalive, 10/100",
                 ["lease-keepalive", "--conns", "10", "--clients", "100"],
                 10000, 100000),
    ]


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last = e
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out waiting for {what} ({last!r})")
        time.sleep(interval)  # poll interval, under the deadline above


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; parts[0] is field 3.
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def proc_context_switches(pid: int) -> int:
    """Context switches of the live threads of a process (voluntary and
    not): with one request in flight, each hand-off of the request between
    threads is about two."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:",
                                        "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return total


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Member:
    name: str
    client: int
    peer: int
    data_dir: Path
    proc: Optional[subprocess.Popen] = None
    # CPU seconds of earlier incarnations (before a restart).
    cpu_before: float = 0.0
    # Highest VmHWM seen before the last reset or restart (kB).
    hwm_seen: int = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client}"


class Cluster:
    def __init__(self, kind: str, binary: str, root: Path, settings: dict,
                 extra: list[str] | None = None):
        self.kind = kind
        self.binary = binary
        self.extra = list(extra or [])
        self.root = root / kind
        self.settings = settings
        self.members = [
            Member(f"{kind}{i}", free_port(), free_port(), self.root / f"{kind}{i}")
            for i in range(3)
        ]

    def command(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}=http://127.0.0.1:{x.peer}" for x in self.members)
        s = self.settings
        cmd = [
            self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", f"http://127.0.0.1:{m.client}",
            "--advertise-client-urls", f"http://127.0.0.1:{m.client}",
            "--listen-peer-urls", f"http://127.0.0.1:{m.peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer}",
            "--initial-cluster", initial,
            "--initial-cluster-token", f"compare-{self.kind}",
            "--heartbeat-interval", str(s["heartbeat_ms"]),
            "--election-timeout", str(s["election_ms"]),
            "--snapshot-count", str(s["snapshot_count"]),
            "--quota-backend-bytes", str(s["quota_bytes"]),
            "--log-level", "warn",
        ]
        if self.kind == "etcd":
            cmd += ["--logger", "zap"]
        return cmd + self.extra

    def start_member(self, m: Member):
        log = open(self.root / f"{m.name}.log", "a")
        m.proc = subprocess.Popen(self.command(m), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        log.close()

    def start(self):
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        for m in self.members:
            self.start_member(m)
        wait_for(lambda: self.leader() is not None, 60, f"{self.kind} to elect a leader")

    def status(self) -> list[dict]:
        out = subprocess.run(
            [ETCDCTL, "--endpoints", ",".join(m.endpoint for m in self.members),
             "--command-timeout=3s", "endpoint", "status", "-w", "json"],
            capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
            timeout=20)
        return json.loads(out.stdout) if out.stdout.strip() else []

    def leader(self) -> Optional[Member]:
        st = self.status()
        if len(st) != 3:
            return None
        for s in st:
            hdr = s["Status"]["header"]
            if s["Status"].get("leader") and s["Status"]["leader"] == hdr["member_id"]:
                return next(m for m in self.members if m.endpoint == s["Endpoint"])
        return None

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(m.proc.pid) + m.cpu_before for m in self.members)

    def context_switches(self) -> int:
        return sum(proc_context_switches(m.proc.pid) for m in self.members)

    def wal_fsyncs(self) -> tuple[float, int]:
        """Seconds spent in, and the number of, WAL fdatasyncs of all members
        so far, from the histogram both etcd and keel export
        (etcd_disk_wal_fsync_duration_seconds); (0, 0) when unreadable."""
        total_s, count = 0.0, 0
        for m in self.members:
            try:
                with urllib.request.urlopen(f"http://{m.endpoint}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return 0.0, 0
            for line in text.splitlines():
                if line.startswith("etcd_disk_wal_fsync_duration_seconds_sum"):
                    total_s += float(line.split()[-1])
                elif line.startswith("etcd_disk_wal_fsync_duration_seconds_count"):
                    count += int(float(line.split()[-1]))
        return total_s, count

    def peak_rss_kb(self) -> list[int]:
        """Each member's peak RSS over the whole run."""
        return [max(m.hwm_seen, proc_status_kb(m.proc.pid, "VmHWM"))
                for m in self.members]

    def current_peak_rss_kb(self) -> list[int]:
        """Each member's peak RSS since reset_peak_rss."""
        return [proc_status_kb(m.proc.pid, "VmHWM") for m in self.members]

    def reset_peak_rss(self):
        """Starts a new peak (VmHWM := current RSS, proc(5) clear_refs),
        so that each workload gets its own peak; the whole run's peak is
        kept in hwm_seen."""
        for m in self.members:
            m.hwm_seen = max(m.hwm_seen, proc_status_kb(m.proc.pid, "VmHWM"))
            with open(f"/proc/{m.proc.pid}/clear_refs", "w") as f:
                f.write("5")

    def stop_member(self, m: Member, sig=signal.SIGTERM):
        if m.proc is None or m.proc.poll() is not None:
            return
        m.cpu_before += proc_cpu_seconds(m.proc.pid)
        m.hwm_seen = max(m.hwm_seen, proc_status_kb(m.proc.pid, "VmHWM"))
        m.proc.send_signal(sig)
        try:
            m.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()

    def stop(self):
        for m in self.members:
            self.stop_member(m)


# ---------------------------------------------------------------- measurements


def _sync_appends(path: Path, seconds: float, samples: list, start: threading.Barrier):
    """Appends 4 KiB blocks to a preallocated file with an fdatasync after
    each, timing each append into `samples`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, 64 << 20)
        os.fsync(fd)
        block = os.urandom(4096)
        start.wait()
        end = time.monotonic() + seconds
        off = 0
        while time.monotonic() < end and off + len(block) <= (64 << 20):
            t0 = time.perf_counter()
            os.pwrite(fd, block, off)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - t0)
            off += len(block)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def disk_sync_bound(directory: Path, seconds: float, writers: int = 1) -> dict:
    """Write+fdatasync of 4 KiB appends to a preallocated file, as a
    write-ahead log does: the floor under any durable write. With writers=3,
    three files are appended and synced at once (one per member: the three
    members of a cluster here share one disk, and a put waits for the
    leader's and a follower's sync, issued at nearly the same time)."""
    start = threading.Barrier(writers)
    per = [[] for _ in range(writers)]
    ts = [threading.Thread(target=_sync_appends,
                           args=(directory / f"fdatasync-probe-{i}", seconds, per[i], start))
          for i in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    samples = sorted(x for p in per for x in p)
    return {
        "writers": writers,
        "count": len(samples),
        "avg_ms": 1e3 * statistics.fmean(samples),
        "p50_ms": 1e3 * samples[len(samples) // 2],
        "p99_ms": 1e3 * samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        # Syncs per second of the writers together: each spent about the
        # sum of its samples writing.
        "per_s": writers * len(samples) / sum(samples),
    }


def loopback_rtt(rounds: int = 2000) -> dict:
    """One-byte TCP ping-pong over loopback (Python's own cost included, so
    this is an upper bound on the kernel's round trip)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def echo():
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = c.recv(1)
            if not b:
                break
            c.sendall(b)
        c.close()

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    cl = socket.create_connection(("127.0.0.1", port))
    cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        cl.sendall(b"x")
        cl.recv(1)
        samples.append(time.perf_counter() - t0)
    cl.close()
    t.join(5)
    srv.close()
    samples.sort()
    return {"p50_us": 1e6 * samples[len(samples) // 2],
            "avg_us": 1e6 * statistics.fmean(samples)}


# ---------------------------------------------------------------- running


def run_bench(bench: str, wl: Workload, total: int, endpoints: list[str],
              extra: list[str], timeout: float) -> dict:
    cmd = [bench, *wl.args, *extra, "--endpoints", ",".join(endpoints),
           "--json", "--no-progress"]
    if total:
        cmd += [wl.total_flag, str(total)]
    # The client's own CPU (keel-bench shares the cores with the servers,
    # so it bounds what QPS any server can show on this machine).
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"keel-bench ran over {timeout:.0f} s", "cmd": cmd}
    if out.returncode != 0 or not out.stdout.strip():
        err = (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1]
        return {"failed": err, "cmd": cmd}
    r = json.loads(out.stdout)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r["client_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    r["cmd"] = cmd
    return r


def measure_restart(c: Cluster, timeout: float) -> dict:
    """Stops a follower and times its restart until it answers a
    serializable read from its own store (serving again)."""
    leader = c.leader()
    m = next(x for x in c.members if x is not leader)
    c.stop_member(m)
    probe = ["--endpoints", m.endpoint, "--command-timeout=1s", "--dial-timeout=1s",
             "get", "--consistency=s", "restart-probe"]
    env = {**os.environ, "ETCDCTL_API": "3"}
    t0 = time.monotonic()
    c.start_member(m)

    def serving():
        if m.proc.poll() is not None:
            raise RuntimeError(f"{m.name} exited with {m.proc.returncode}")
        r = subprocess.run([ETCDCTL, *probe], capture_output=True, env=env, timeout=5)
        return r.returncode == 0

    wait_for(serving, timeout, f"{m.name} to serve after a restart", interval=0.02)
    serve_s = time.monotonic() - t0
    # Caught up: its applied index reaches the leader's commit index.
    st = {s["Endpoint"]: s["Status"] for s in c.status()}
    target = st[leader.endpoint]["raftIndex"] if leader else 0

    def caught_up():
        s = {x["Endpoint"]: x["Status"] for x in c.status()}.get(m.endpoint)
        return s is not None and s.get("raftAppliedIndex", s.get("raftIndex", 0)) >= target

    wait_for(caught_up, timeout, f"{m.name} to catch up", interval=0.05)
    return {"serve_s": serve_s, "caught_up_s": time.monotonic() - t0, "member": m.name,
            "restarted_peak_rss_kb": proc_status_kb(m.proc.pid, "VmHWM")}


def fmt(v: Optional[float], unit: str = "") -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.3g}{unit}"


def mean(xs: list[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


@dataclass
class Row:
    workload: str
    metric: str
    etcd: Optional[float]
    keel: Optional[float]
    better: str  # "higher" or "lower"
    note: str = ""

    @property
    def ratio(self) -> Optional[float]:
        if self.etcd in (None, 0) or self.keel is None:
            return None
        return self.keel / self.etcd


def summarize(results: dict, wls: list[Workload]) -> list[Row]:
    rows: list[Row] = []
    for wl in wls:
        if wl.name not in results:
            continue
        runs = results[wl.name]

        def pick(kind, f):
            vals = []
            for r in runs[kind]:
                if "failed" in r:
                    continue
                vals.append(f(r))
            return mean(vals)

        def failure(kind):
            fails = [r["failed"] for r in runs[kind] if "failed" in r]
            return fails[0] if fails else ""

        note = "; ".join(f"{k}: {failure(k)}" for k in ("etcd", "keel") if failure(k))
        errs = {k: sum(r.get("errors", 0) for r in runs[k]) for k in ("etcd", "keel")}
        if any(errs.values()):
            note = (note + "; " if note else "") + f"errors etcd {errs['etcd']}, keel {errs['keel']}"
        if wl.name == "watch":
            rows.append(Row(wl.title, "delay avg ms", pick("etcd", lambda r: r["latency_ms"]["avg"]),
                            pick("keel", lambda r: r["latency_ms"]["avg"]), "lower", note))
            rows.append(Row(wl.title, "delay p99 ms", pick("etcd", lambda r: r["latency_ms"]["p99"]),
                            pick("keel", lambda r: r["latency_ms"]["p99"]), "lower"))
            rows.append(rss_row(wl, pick))
            continue
        rows.append(Row(wl.title, "QPS", pick("etcd", lambda r: r["qps"]),
                        pick("keel", lambda r: r["qps"]), "higher", note))
        for p in ("avg", "p50", "p99", "p99.9"):
            rows.append(Row(wl.title, f"{p} ms", pick("etcd", lambda r, p=p: r["latency_ms"][p]),
                            pick("keel", lambda r, p=p: r["latency_ms"][p]), "lower"))
        rows.append(Row(wl.title, "server CPU s / 10k ops",
                        pick("etcd", lambda r: 1e4 * r["server_cpu_s"] / max(1, r["ops"])),
                        pick("keel", lambda r: 1e4 * r["server_cpu_s"] / max(1, r["ops"])),
                        "lower"))
        fsync_ms = lambda r: (1e3 * r["wal_fsync_s"] / r["wal_fsyncs"]  # noqa: E731
                              if r.get("wal_fsyncs") else None)
        if any(r.get("wal_fsyncs") for k in ("etcd", "keel") for r in runs[k]):
            rows.append(Row(wl.title, "WAL fdatasync avg ms", pick("etcd", fsync_ms),
                            pick("keel", fsync_ms), "lower",
                            "members' own histogram: the disk's share of a write"))
        rows.append(Row(wl.title, "server context switches / op",
                        pick("etcd", lambda r: r.get("server_context_switches", 0) / max(1, r["ops"])),
                        pick("keel", lambda r: r.get("server_context_switches", 0) / max(1, r["ops"])),
                        "lower", "all three members' threads"))
        rows.append(Row(wl.title, "client CPU s / 10k ops",
                        pick("etcd", lambda r: 1e4 * r.get("client_cpu_s", 0) / max(1, r["ops"])),
                        pick("keel", lambda r: 1e4 * r.get("client_cpu_s", 0) / max(1, r["ops"])),
                        "lower", "keel-bench itself, on the same cores"))
        rows.append(rss_row(wl, pick))
    return rows


def rss_row(wl: Workload, pick) -> Row:
    """The highest member's peak RSS during the workload (the peak is reset
    before each run; memory a member kept from earlier workloads counts)."""
    f = lambda r: max(r["peak_rss_kb"]) / 1024 if "peak_rss_kb" in r else None  # noqa: E731
    return Row(wl.title, "peak RSS MiB (max member)", pick("etcd", f), pick("keel", f), "lower")


def markdown_table(rows: list[Row]) -> str:
    out = ["| workload | metric | etcd | keel | keel/etcd | note |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    last = None
    for r in rows:
        name = r.workload if r.workload != last else ""
        last = r.workload
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "n/a"
        out.append(f"| {name} | {r.metric} | {fmt(r.etcd)} | {fmt(r.keel)} | {ratio} | {r.note} |")
    return "\n".join(out)


def text_table(rows: list[Row]) -> str:
    out = [f"{'workload':44} {'metric':24} {'etcd':>10} {'keel':>10} {'keel/etcd':>9}"]
    last = None
    for r in rows:
        name = r.workload if r.workload != last else ""
        last = r.workload
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "n/a"
        line = f"{name:44} {r.metric:24} {fmt(r.etcd):>10} {fmt(r.keel):>10} {ratio:>9}"
        if r.note:
            line += f"  ({r.note})"
        out.append(line)
    return "\n".join(out)


def svg_chart(rows: list[Row], path: Path):
    """Horizontal bars of keel/etcd for QPS (higher is better) and average
    latency (lower is better), on a log scale around 1x."""
    import math
    items = [(f"{r.workload}: {r.metric}", r.ratio, r.better) for r in rows
             if r.ratio is not None and r.metric in ("QPS", "avg ms", "delay avg ms")]
    items += [(f"peak RSS (max member)", r.ratio, r.better) for r in rows
              if r.metric == "peak RSS MiB (max member)" and r.ratio is not None]
    if not items:
        return
    w, left, bar_h, gap = 900, 420, 18, 6
    h = 60 + len(items) * (bar_h + gap)
    lo, hi = math.log10(0.05), math.log10(20)
    x0 = left
    span = w - left - 30

    def xpos(v):
        v = min(max(math.log10(max(v, 1e-3)), lo), hi)
        return x0 + (v - lo) / (hi - lo) * span

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             '<text x="10" y="20" font-size="14" font-weight="bold">keel / etcd '
             '(log scale; green = keel better, red = keel worse)</text>']
    for tick in (0.1, 0.25, 0.5, 1, 2, 3, 5, 10):
        x = xpos(tick)
        parts.append(f'<line x1="{x:.1f}" y1="35" x2="{x:.1f}" y2="{h - 10}" '
                     f'stroke="{"black" if tick == 1 else "#ddd"}"/>')
        parts.append(f'<text x="{x:.1f}" y="32" text-anchor="middle">{tick}x</text>')
    y = 45
    for label, ratio, better in items:
        good = ratio >= 1 if better == "higher" else ratio <= 1
        x1, x2 = sorted((xpos(1), xpos(ratio)))
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">'
                     f'{label.replace("&", "&amp;")}</text>')
        parts.append(f'<rect x="{x1:.1f}" y="{y}" width="{max(1, x2 - x1):.1f}" '
                     f'height="{bar_h}" fill="{"#3a3" if good else "#c33"}"/>')
        parts.append(f'<text x="{x2 + 4:.1f}" y="{y + 13}">{ratio:.2f}x</text>')
        y += bar_h + gap
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small totals (a minute or two)")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--rounds", type=int, default=2, help="A B rounds per workload")
    ap.add_argument("--out", default=str(REPO / "build" / "compare"),
                    help="where the report goes")
    ap.add_argument("--data-root", default="",
                    help="data directories (default: <out>/data, one disk for both)")
    ap.add_argument("--keel", default=str(REPO / "build" / "src" / "cmd" / "keel"))
    ap.add_argument("--bench", default=str(REPO / "build" / "bench" / "keel-bench"))
    ap.add_argument("--restart-keys", type=int, default=0,
                    help="keys loaded before the restart test (default: 20,000 "
                    "quick, 1,000,000 full; 0 in --only runs skips it)")
    ap.add_argument("--baseline", default="",
                    help="compare this keel binary (as 'etcd' column: before) with "
                    "--keel (after) instead of etcd, to measure an optimization")
    ap.add_argument("--baseline-flags", default="",
                    help="extra flags for the baseline's members (space-separated), "
                    "e.g. --baseline <same keel> --baseline-flags=--experimental-grpc-front=false")
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    ap.add_argument("--election-ms", type=int, default=1000)
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.data_root) if args.data_root else out / "data"
    root.mkdir(parents=True, exist_ok=True)
    for b in (args.keel, args.bench, ETCD, ETCDCTL):
        if not os.access(b, os.X_OK):
            print(f"compare: {b} is missing (scripts/build.sh keel keel-bench; "
                  "scripts/setup.sh)", file=sys.stderr)
            return 2
    wls = workloads()
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {w.name for w in wls} - {"restart"}
        if unknown:
            print(f"compare: unknown workloads {sorted(unknown)}; known: "
                  f"{[w.name for w in wls] + ['restart']}", file=sys.stderr)
            return 2
        wls = [w for w in wls if w.name in names]
    restart_keys = args.restart_keys
    if not restart_keys and (not args.only or "restart" in args.only.split(",")):
        restart_keys = 20000 if args.quick else 1000000
    mode = "quick" if args.quick else "full"
    watch_extra = (["--watchers", "1000", "--watch-streams", "10", "--put-total", "50"]
                   if args.quick else
                   ["--watchers", "10000", "--watch-streams", "100", "--put-total", "100"])

    settings = {"heartbeat_ms": args.heartbeat_ms, "election_ms": args.election_ms,
                "snapshot_count": 100000, "quota_bytes": 8 << 30}
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log(f"compare ({mode}): data under {root}")
    bounds = {"disk_before": disk_sync_bound(root, 2.0),
              "disk_3_writers": disk_sync_bound(root, 2.0, writers=3),
              "loopback": loopback_rtt()}
    log(f"disk write+fdatasync p50 {bounds['disk_before']['p50_ms']:.2f} ms "
        f"({bounds['disk_3_writers']['p50_ms']:.2f} ms with three writers at once), "
        f"loopback RTT p50 {bounds['loopback']['p50_us']:.0f} us")

    a_bin = args.baseline or ETCD
    clusters = {"etcd": Cluster("etcd" if not args.baseline else "base", a_bin, root,
                                settings,
                                args.baseline_flags.split() if args.baseline else []),
                "keel": Cluster("keel", args.keel, root, settings)}
    results: dict = {}
    extra_out: dict = {}
    try:
        for c in clusters.values():
            c.start()
        for wl in wls:
            results[wl.name] = {"etcd": [], "keel": []}
            total = wl.quick_total if args.quick else wl.full_total
            for rnd in range(args.rounds):
                for kind in ("etcd", "keel"):  # A B A B
                    c = clusters[kind]
                    leader = c.leader()
                    if wl.endpoints == "all" or leader is None:
                        eps = [m.endpoint for m in c.members]
                    else:
                        eps = [leader.endpoint]
                    extra = watch_extra if wl.name == "watch" else []
                    cpu0, cs0 = c.cpu_seconds(), c.context_switches()
                    fs0 = c.wal_fsyncs()
                    c.reset_peak_rss()
                    r = run_bench(args.bench, wl, total, eps, extra, timeout=900)
                    r["server_cpu_s"] = c.cpu_seconds() - cpu0
                    r["server_context_switches"] = c.context_switches() - cs0
                    fs1 = c.wal_fsyncs()
                    if fs1[1] > fs0[1] and fs0[1] > 0:
                        r["wal_fsync_s"], r["wal_fsyncs"] = fs1[0] - fs0[0], fs1[1] - fs0[1]
                    r["peak_rss_kb"] = c.current_peak_rss_kb()
                    r["round"] = rnd
                    results[wl.name][kind].append(r)
                    if "failed" in r:
                        log(f"  {wl.name:16} {kind}: FAILED {r['failed']}")
                    else:
                        log(f"  {wl.name:16} {kind}: {r['qps']:10.0f} ops/s  avg "
                            f"{r['latency_ms']['avg']:8.3f} ms  p99 "
                            f"{r['latency_ms']['p99']:8.3f} ms  errors {r['errors']}  "
                            f"server CPU {r['server_cpu_s']:.1f} s  "
                            f"client CPU {r['client_cpu_s']:.1f} s  peak RSS "
                            f"{max(r['peak_rss_kb']) / 1024:.0f} MiB")
        rss = {k: c.peak_rss_kb() for k, c in clusters.items()}
        cpu = {k: c.cpu_seconds() for k, c in clusters.items()}
        if restart_keys:
            extra_out["restart"] = {}
            for kind in ("etcd", "keel"):
                c = clusters[kind]
                leader = c.leader()
                load = Workload("load", "load", ["put", "--key-size", "8", "--val-size", "256",
                                                 "--key-space", str(restart_keys),
                                                 "--sequential", "--conns", "100",
                                                 "--clients", "1000"], 0, 0)
                log(f"  loading {restart_keys:,} keys into {kind}")
                r = run_bench(args.bench, load, restart_keys, [leader.endpoint], [], 3600)
                if "failed" in r:
                    extra_out["restart"][kind] = {"failed": r["failed"]}
                    continue
                # Let every member apply the load before the stop.
                rs = measure_restart(c, 600)
                rs["load_qps"] = r["qps"]
                extra_out["restart"][kind] = rs
                log(f"  restart {kind}: serving after {rs['serve_s']:.2f} s, caught up "
                    f"after {rs['caught_up_s']:.2f} s")
            rss_after = {k: c.peak_rss_kb() for k, c in clusters.items()}
            extra_out["rss_after_restart_load_kb"] = rss_after
    finally:
        for c in clusters.values():
            c.stop()
    bounds["disk_after"] = disk_sync_bound(root, 2.0)

    rows = summarize(results, wls)
    rows.append(Row("whole run", "peak RSS MiB (max member)", max(rss["etcd"]) / 1024,
                    max(rss["keel"]) / 1024, "lower"))
    rows.append(Row("whole run", "peak RSS MiB (sum of members)", sum(rss["etcd"]) / 1024,
                    sum(rss["keel"]) / 1024, "lower"))
    rows.append(Row("whole run", "CPU s (sum of members)", cpu["etcd"], cpu["keel"], "lower"))
    if "restart" in extra_out:
        rs = extra_out["restart"]
        get = lambda k, f: rs.get(k, {}).get(f)  # noqa: E731
        rows.append(Row(f"restart a member holding {restart_keys:,} keys",
                        "seconds to serve", get("etcd", "serve_s"), get("keel", "serve_s"), "lower",
                        "; ".join(f"{k}: {rs[k]['failed']}" for k in rs if "failed" in rs[k])))
        rows.append(Row(f"restart a member holding {restart_keys:,} keys",
                        "seconds to catch up", get("etcd", "caught_up_s"),
                        get("keel", "caught_up_s"), "lower"))
        kb = lambda k: (get(k, "restarted_peak_rss_kb") or 0) / 1024 or None  # noqa: E731
        rows.append(Row(f"restart a member holding {restart_keys:,} keys",
                        "restarted member's peak RSS MiB", kb("etcd"), kb("keel"), "lower"))
        ra = extra_out.get("rss_after_restart_load_kb")
        if ra:
            rows.append(Row(f"after loading {restart_keys:,} keys", "peak RSS MiB (max member)",
                            max(ra["etcd"]) / 1024, max(ra["keel"]) / 1024, "lower"))

    print(text_table(rows))
    d, lb = bounds["disk_before"], bounds["loopback"]
    da, d3 = bounds["disk_after"], bounds["disk_3_writers"]
    bound_text = (
        f"Disk write+fdatasync (4 KiB into a preallocated file): p50 {d['p50_ms']:.2f} ms, "
        f"avg {d['avg_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms ({d['per_s']:.0f}/s) before the "
        f"run; p50 {da['p50_ms']:.2f} ms, avg {da['avg_ms']:.2f} ms after. "
        f"With three writers at once (one per member, as the members share the disk): "
        f"p50 {d3['p50_ms']:.2f} ms, avg {d3['avg_ms']:.2f} ms per write+fdatasync. "
        f"Loopback TCP round trip (Python ping-pong): p50 {lb['p50_us']:.0f} us.")
    print("\n" + bound_text)
    (out / "report.json").write_text(json.dumps(
        {"mode": mode, "settings": settings, "bounds": bounds, "results": results,
         "peak_rss_kb": rss, "cpu_s": cpu, **extra_out}, indent=1))
    svg_chart(rows, out / "ratios.svg")
    if args.baseline:
        print(f"\n(the 'etcd' column is the baseline keel binary {args.baseline})")
    md = [f"# keel vs {'etcd' if not args.baseline else 'a baseline keel (column etcd): ' + args.baseline} ({mode} mode)", "",
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{os.cpu_count()} CPUs; three members each on loopback; heartbeat "
          f"{settings['heartbeat_ms']} ms, election timeout {settings['election_ms']} ms, "
          f"snapshot count {settings['snapshot_count']}, fsync on, data under {root}. "
          f"Each workload ran {args.rounds} times per server, alternating etcd and keel; "
          "figures are the mean over the rounds. Keys 8 B, values 256 B, 100,000-key space "
          "unless the workload says otherwise. `server CPU s / 10k ops` is the CPU time of "
          "all three members during the run per 10,000 operations.", "",
          bound_text, "", markdown_table(rows), "", "![keel/etcd ratios](ratios.svg)", "",
          "Raw figures and the exact keel-bench commands: `report.json`."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    log(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
