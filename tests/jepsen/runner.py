#!/usr/bin/python3
"""Fault-injection runner: real keel members, real faults, every history checked.

One run: start a cluster of 3 or 5 keel members on loopback (tests/e2e's
Cluster), drive N concurrent clients (each bound to one member, as Jepsen
does, so that a client of a minority member sees what that member serves),
record every operation with its invocation and completion times, and run a
fault schedule ("nemesis") at the same time.  Then heal everything and check:

  1. the history is linearizable (keel-lincheck, tests/jepsen/lincheck.h);
  2. every acknowledged write is in the store at its revision (a Range at
     that revision returns it) and no write is visible at a revision that
     differs from the one acknowledged;
  3. every member reports the same HashKV at the same revision.

Faults: kill -9 and restart (leader, follower), SIGSTOP/SIGCONT pauses
longer than the election timeout, network partitions (majority/minority,
isolated leader, bridge, one-way), message delay and loss, catching up by
snapshot, and a full disk (one member's data dir on a small tmpfs; root).  Network faults go through each member's test-only fault file
(--experimental-test-fault-file, src/server/test_faults.h).

Every random choice comes from the seed.  A failure prints the seed, the
schedule that ran, the command that replays it, and the path of an HTML
timeline of the history.

  runner.py --schedule partition-majority --seed 3            # one run
  runner.py --ci                                              # the CI set
  KEEL_JEPSEN_LONG=1 runner.py --long --hours 2               # soak
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import grpc  # noqa: E402  Debian's python3-grpcio
from etcd3.etcdrpc import rpc_pb2 as pb  # noqa: E402  Debian's python3-etcd3
from etcd3.etcdrpc import rpc_pb2_grpc as pbg  # noqa: E402

from cluster import Cluster, Member, wait_for  # noqa: E402

REPO = HERE.parents[1]


def default_bin(name: str, sub: str) -> str:
    return str(REPO / "build" / sub / name)


# ---------------------------------------------------------------------------
# members with a fault file


class Launcher:
    """Starts every member process from one thread that lives as long as the
    runner.  Members die with their parent through PR_SET_PDEATHSIG, which
    fires when the *thread* that forked them exits: a member restarted from
    the nemesis thread would be killed when that thread ends."""

    _q: "queue.Queue" = None  # type: ignore[assignment]

    @classmethod
    def start(cls, fn: Callable[[], None]) -> None:
        if cls._q is None:
            cls._q = queue.Queue()
            threading.Thread(target=cls._loop, name="launcher", daemon=True).start()
        done: "queue.Queue" = queue.Queue()
        cls._q.put((fn, done))
        err = done.get()
        if err is not None:
            raise err

    @classmethod
    def _loop(cls) -> None:
        while True:
            fn, done = cls._q.get()
            try:
                fn()
                done.put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                done.put(e)


class FaultMember(Member):
    """A keel member whose peer messages obey the rules in its fault file."""

    def __init__(self, cluster: "FaultCluster", name: str, base: Path):
        super().__init__(cluster, name, base)
        self.fault_path = base / f"{name}.faults"
        self.fault_path.write_text("")
        self.member_id = 0
        self.paused = False
        self.joining = False  # added by MemberAdd: --initial-cluster-state existing

    def argv(self) -> list[str]:
        a = super().argv() + ["--experimental-test-fault-file", str(self.fault_path)]
        if self.joining:
            a[a.index("--initial-cluster-state") + 1] = "existing"
        if self.cluster.unsafe_reads:
            a.append("--experimental-unsafe-skip-read-index")
        return a

    def start(self) -> None:
        Launcher.start(super().start)

    def set_rules(self, lines: list[str]) -> None:
        tmp = self.fault_path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, self.fault_path)  # the member never reads half a file

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.endpoint)


class FaultCluster(Cluster):
    def __init__(self, base: Path, size: int, unsafe_reads: bool, extra_flags: dict):
        super().__init__("keel", base, 0, extra_flags=extra_flags)
        self.unsafe_reads = unsafe_reads
        self.members = [FaultMember(self, f"m{i}", self.base) for i in range(size)]
        self.next_index = size


# ---------------------------------------------------------------------------
# small gRPC helpers (fresh channel per call: they run rarely)


def status(m: FaultMember, timeout: float = 1.0) -> pb.StatusResponse:
    with m.channel() as ch:
        return pbg.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=timeout)


def leader_of(members: list[FaultMember]) -> Optional[FaultMember]:
    """The member that every reachable running member names as leader."""
    ids = set()
    for m in members:
        if not m.running() or m.paused:
            continue
        try:
            ids.add(status(m).leader)
        except grpc.RpcError:
            continue
    if len(ids) != 1:
        return None
    (lid,) = ids
    for m in members:
        if m.member_id == lid:
            return m
    return None


# ---------------------------------------------------------------------------
# the history


class History:
    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.events: list[tuple[int, str]] = []  # (monotonic ns, nemesis event)
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def add(self, op: dict) -> None:
        with self._lock:
            self.ops.append(op)

    def event(self, text: str) -> None:
        with self._lock:
            self.events.append((time.monotonic_ns(), text))

    def write(self, path: Path) -> None:
        with open(path, "w") as f:
            for op in sorted(self.ops, key=lambda o: o["id"]):
                f.write(json.dumps(op) + "\n")


# Errors after which a write certainly did not happen (refused before it was
# proposed); every other error leaves the outcome unknown.
DEFINITE_FAILURES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE)


class Client(threading.Thread):
    """One process of the history: one op at a time against one member."""

    def __init__(self, process: int, member: FaultMember, keys: list[str], seed: int,
                 history: History, stop: threading.Event, op_timeout: float):
        super().__init__(name=f"client-{process}", daemon=True)
        self.process = process
        self.member = member
        self.keys = keys
        self.rng = random.Random(seed)
        self.history = history
        self.stop_event = stop
        self.op_timeout = op_timeout
        self.seen: dict[str, str] = {}  # last value this client saw per key
        self.counter = 0

    def run(self) -> None:
        ch = self.member.channel()
        kv = pbg.KVStub(ch)
        try:
            while not self.stop_event.is_set():
                ok = self.one(kv)
                if not ok:
                    # Client pacing after an error (member down, no leader),
                    # not a wait for a condition: the next op retries.
                    self.stop_event.wait(0.05)
        finally:
            ch.close()

    def fresh_value(self) -> str:
        self.counter += 1
        return f"p{self.process}-{self.counter}"

    def one(self, kv: pbg.KVStub) -> bool:
        key = self.rng.choice(self.keys)
        r = self.rng.random()
        op = {"id": self.history.next_id(), "process": self.process, "key": key,
              "member": int(self.member.name[1:])}
        if r < 0.4:
            op["type"] = "get"
            req = pb.RangeRequest(key=key.encode())
            call = kv.Range
        elif r < 0.7:
            op["type"] = "put"
            op["value"] = self.fresh_value()
            req = pb.PutRequest(key=key.encode(), value=op["value"].encode())
            call = kv.Put
        elif r < 0.8:
            op["type"] = "delete"
            op["has_read"] = True
            req = pb.DeleteRangeRequest(key=key.encode(), prev_kv=True)
            call = kv.DeleteRange
        else:
            op["type"] = "cas"
            op["value"] = self.fresh_value()
            op["has_read"] = True
            if key in self.seen and self.rng.random() < 0.85:
                op["cmp"] = "value"
                op["expect_value"] = self.seen[key]
                cmp = pb.Compare(key=key.encode(), result=pb.Compare.EQUAL,
                                 target=pb.Compare.VALUE, value=self.seen[key].encode())
            else:
                op["cmp"] = "absent"
                cmp = pb.Compare(key=key.encode(), result=pb.Compare.EQUAL,
                                 target=pb.Compare.CREATE, create_revision=0)
            req = pb.TxnRequest(
                compare=[cmp],
                success=[pb.RequestOp(request_put=pb.PutRequest(
                    key=key.encode(), value=op["value"].encode()))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key.encode()))])
            call = kv.Txn
        op["call_ns"] = time.monotonic_ns()
        try:
            resp = call(req, timeout=self.op_timeout)
        except grpc.RpcError as e:
            op["return_ns"] = time.monotonic_ns()
            code = e.code()
            op["error"] = f"{code.name}: {e.details()}"
            if op["type"] == "get" or code in DEFINITE_FAILURES:
                op["outcome"] = "fail"
            else:
                op["outcome"] = "unknown"
            self.history.add(op)
            return False
        op["return_ns"] = time.monotonic_ns()
        op["outcome"] = "ok"
        op["revision"] = resp.header.revision

        def read(kvs) -> None:
            op["found"] = len(kvs) > 0
            if kvs:
                op["read_value"] = kvs[0].value.decode()
                op["read_mod_revision"] = kvs[0].mod_revision
                self.seen[key] = op["read_value"]

        if op["type"] == "get":
            read(resp.kvs)
        elif op["type"] == "put":
            self.seen[key] = op["value"]
        elif op["type"] == "delete":
            op["deleted"] = resp.deleted
            if resp.prev_kvs:
                op["read_value"] = resp.prev_kvs[0].value.decode()
                op["read_mod_revision"] = resp.prev_kvs[0].mod_revision
            self.seen.pop(key, None)
        else:
            op["succeeded"] = resp.succeeded
            if resp.succeeded:
                self.seen[key] = op["value"]
            else:
                read(resp.responses[0].response_range.kvs)
        self.history.add(op)
        return True


class Watcher(threading.Thread):
    """Watches the clients' keys (prefix "k") from revision 1 on one member,
    and resumes after the last revision it saw whenever the stream breaks, as
    etcd's clients do. Records every event, to check after the run that the
    stream was ordered, unique, reliable and equal to the store's history."""

    def __init__(self, name: str, member: FaultMember, stop: threading.Event):
        super().__init__(name=f"watcher-{name}", daemon=True)
        self.member = member
        self.stop_event = stop
        self.events: list[tuple[int, str, str, str, int]] = []  # rev, type, key, value, mod
        self.problems: list[str] = []
        self.streams = 0
        self._call = None
        self._lock = threading.Lock()

    def next_revision(self) -> int:
        return self.events[-1][0] + 1 if self.events else 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.one_stream()
            except grpc.RpcError:
                pass  # the member went away: resume
            if not self.stop_event.is_set():
                self.stop_event.wait(0.1)  # client pacing before resuming

    def one_stream(self) -> None:
        start = self.next_revision()
        done = threading.Event()

        def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=b"k", range_end=b"l", start_revision=start))
            done.wait()

        with self.member.channel() as ch:
            call = pbg.WatchStub(ch).Watch(requests())
            with self._lock:
                self._call = call
            if self.stop_event.is_set():
                call.cancel()
            self.streams += 1
            try:
                for resp in call:
                    if resp.compact_revision:
                        self.problems.append(f"{self.member.name}: watch from {start} "
                                             f"compacted at {resp.compact_revision}")
                        return
                    if resp.canceled:
                        return  # resume
                    for ev in resp.events:
                        kv = ev.kv
                        t = "DELETE" if ev.type == 1 else "PUT"
                        self.events.append((kv.mod_revision, t, kv.key.decode(),
                                            kv.value.decode(), kv.mod_revision))
            finally:
                done.set()

    def cancel(self) -> None:
        with self._lock:
            if self._call is not None:
                self._call.cancel()


def store_history(m: FaultMember, until: int) -> list[tuple]:
    """The store's events for prefix "k" from revision 1 through `until` (a
    sentinel write's revision), read with one fresh watch after the run."""
    out: list[tuple] = []
    done = threading.Event()

    def requests():
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=b"k", range_end=b"l", start_revision=1))
        done.wait()

    with m.channel() as ch:
        call = pbg.WatchStub(ch).Watch(requests(), timeout=60)
        try:
            for resp in call:
                for ev in resp.events:
                    kv = ev.kv
                    out.append((kv.mod_revision, "DELETE" if ev.type == 1 else "PUT",
                                kv.key.decode(), kv.value.decode(), kv.mod_revision))
                if out and out[-1][0] >= until:
                    break
        finally:
            done.set()
            call.cancel()
    return out


def membership_supported(m: FaultMember) -> bool:
    """MemberRemove of an id that is no member: etcd answers 'member not
    found'; a keel without the membership API answers UNIMPLEMENTED."""
    with m.channel() as ch:
        try:
            pbg.ClusterStub(ch).MemberRemove(pb.MemberRemoveRequest(ID=1), timeout=10)
        except grpc.RpcError as e:
            return e.code() != grpc.StatusCode.UNIMPLEMENTED
    return True


def watch_supported(m: FaultMember) -> bool:
    done = threading.Event()

    def requests():
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"probe"))
        done.wait()

    with m.channel() as ch:
        call = pbg.WatchStub(ch).Watch(requests(), timeout=10)
        try:
            for resp in call:
                return resp.created
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return False
            raise
        finally:
            done.set()
            call.cancel()
    return False


def check_watches(c: FaultCluster, watchers: list[Watcher], ops: list[dict]) -> list[str]:
    problems: list[str] = []
    # A last write in the watched range marks the end of the history.
    with c.members[0].channel() as ch:
        sentinel = pbg.KVStub(ch).Put(pb.PutRequest(key=b"k~end", value=b"end"),
                                      timeout=10).header.revision
    histories = {}
    for m in c.members:
        histories[m.name] = store_history(m, sentinel)
    names = list(histories)
    ref = histories[names[0]]
    for n in names[1:]:
        if histories[n] != ref:
            problems.append(f"the store's event history differs between {names[0]} and {n}")
    by_rev = {e[0]: e for e in ref}
    # Ordered and unique: revisions strictly increase (single-key writes).
    for w in watchers:
        problems += w.problems
        evs = w.events
        for a, b in zip(evs, evs[1:]):
            if b[0] <= a[0]:
                problems.append(f"watcher on {w.member.name}: event at revision {b[0]} after "
                                f"one at {a[0]} (out of order or duplicated)")
                break
        # Reliable and equal to the store: exactly the store's events over
        # the revisions it covered.
        if evs:
            lo, hi = 1, evs[-1][0]
            expect = [e for e in ref if lo <= e[0] <= hi]
            if evs != expect:
                got, want = set(evs), set(expect)
                missing = sorted(want - got)[:3]
                extra = sorted(got - want)[:3]
                problems.append(f"watcher on {w.member.name} ({w.streams} streams): "
                                f"{len(evs)} events vs the store's {len(expect)} up to "
                                f"revision {hi}; missing {missing}, unexpected {extra}")
    # Acknowledged writes appear as events at their revisions.
    for o in ops:
        if o["outcome"] != "ok" or o["type"] == "get":
            continue
        wrote = o["type"] == "put" or (o["type"] == "cas" and o.get("succeeded")) or \
            (o["type"] == "delete" and o.get("deleted", 0) > 0)
        if not wrote:
            continue
        e = by_rev.get(o["revision"])
        want_type = "DELETE" if o["type"] == "delete" else "PUT"
        if e is None or e[1] != want_type or e[2] != o["key"] or \
                (want_type == "PUT" and e[3] != o["value"]):
            problems.append(f"acknowledged op {o['id']} ({o['type']} {o['key']} at revision "
                            f"{o['revision']}) is not the store's event there: {e}")
            if len(problems) > 20:
                break
    return problems


# ---------------------------------------------------------------------------
# the nemesis


class Nemesis:
    """Applies faults to the cluster; records each as a history event."""

    def __init__(self, cluster: FaultCluster, history: History, rng: random.Random):
        self.c = cluster
        self.h = history
        self.rng = rng
        self.drops: set[tuple[str, str]] = set()  # (from, to)
        self.slow: Optional[tuple[int, int, float]] = None  # delay, jitter, loss
        self.killed: list[FaultMember] = []
        self.disk_exits: list[str] = []
        self.log: list[str] = []
        self.t0 = time.monotonic()

    def note(self, text: str) -> None:
        line = f"t={time.monotonic() - self.t0:6.2f}s {text}"
        self.log.append(line)
        self.h.event(text)
        print(f"  nemesis: {line}", flush=True)

    def apply_net(self) -> None:
        for m in self.c.members:
            lines = []
            if self.slow:
                d, j, loss = self.slow
                lines.append(f"delay * {d} {j}")
                if loss > 0:
                    lines.append(f"drop * {loss}")
            for (a, b) in sorted(self.drops):
                if a == m.name:
                    lines.append(f"drop {b}")
            m.set_rules(lines)

    def members(self) -> list[FaultMember]:
        return list(self.c.members)

    def leader(self) -> Optional[FaultMember]:
        try:
            return wait_for(lambda: leader_of(self.c.members), 10, "a leader")
        except AssertionError:
            return None

    def expect_new_leader(self, among: list[FaultMember], old: FaultMember,
                          timeout: float) -> None:
        """The fault really cut the old leader off: the others elect one of
        themselves (otherwise the fault did nothing and the run is void)."""
        def new_leader():
            lead = leader_of(among)
            return lead if lead is not None and lead is not old else None
        lead = wait_for(new_leader, timeout, f"a new leader among "
                        f"{','.join(m.name for m in among)} after {old.name} was cut off")
        self.note(f"{lead.name} is the new leader")

    # -- network

    def partition(self, groups: list[list[FaultMember]], why: str) -> None:
        where = {m.name: i for i, g in enumerate(groups) for m in g}
        for a in self.c.members:
            for b in self.c.members:
                if a is not b and where.get(a.name, -1) != where.get(b.name, -2):
                    self.drops.add((a.name, b.name))
        self.apply_net()
        self.note(f"partition {why}: " + " | ".join(",".join(m.name for m in g) for g in groups))

    def one_way(self, src: FaultMember, dsts: list[FaultMember], why: str) -> None:
        for d in dsts:
            self.drops.add((src.name, d.name))
        self.apply_net()
        self.note(f"one-way {why}: {src.name} cannot send to {','.join(d.name for d in dsts)}")

    def bridge(self) -> None:
        ms = self.members()
        self.rng.shuffle(ms)
        k = len(ms) // 2
        left, mid, right = ms[:k], ms[k], ms[k + 1:]
        for a in left:
            for b in right:
                self.drops.add((a.name, b.name))
                self.drops.add((b.name, a.name))
        self.apply_net()
        self.note(f"bridge: {','.join(m.name for m in left)} <- {mid.name} -> "
                  f"{','.join(m.name for m in right)}")

    def slow_net(self, delay_ms: int, jitter_ms: int, loss: float) -> None:
        self.slow = (delay_ms, jitter_ms, loss)
        self.apply_net()
        self.note(f"network delay {delay_ms}+U(0,{jitter_ms}) ms, loss {loss:.0%}")

    def heal_net(self) -> None:
        if self.drops or self.slow:
            self.drops.clear()
            self.slow = None
            self.apply_net()
            self.note("heal network")

    # -- processes

    def kill(self, m: FaultMember, why: str) -> None:
        m.kill()
        m.paused = False
        self.killed.append(m)
        self.note(f"kill -9 {m.name} ({why})")

    def restart_all(self) -> None:
        for m in self.killed:
            m.start()
            self.note(f"restart {m.name}")
        self.killed.clear()

    def pause(self, m: FaultMember, why: str) -> None:
        m.signal(signal.SIGSTOP)
        m.paused = True
        self.note(f"SIGSTOP {m.name} ({why})")

    def resume_all(self) -> None:
        for m in self.c.members:
            if m.paused:
                m.signal(signal.SIGCONT)
                m.paused = False
                self.note(f"SIGCONT {m.name}")

    def heal_all(self) -> None:
        self.resume_all()
        self.heal_net()
        self.restart_all()


def hold(stop: threading.Event, rng: random.Random, lo: float, hi: float) -> None:
    """How long a fault lasts (part of the schedule, drawn from the seed)."""
    stop.wait(rng.uniform(lo, hi))


# Each schedule runs faults until stop is set, healing between them.
def sched_none(n: Nemesis, stop: threading.Event, el: float) -> None:
    stop.wait()


def sched_partition_majority(n: Nemesis, stop, el) -> None:
    while not stop.is_set():
        ms = n.members()
        n.rng.shuffle(ms)
        k = len(ms) // 2
        n.partition([ms[:k], ms[k:]], "minority/majority")
        hold(stop, n.rng, 3 * el, 6 * el)
        n.heal_net()
        hold(stop, n.rng, 2 * el, 4 * el)


def sched_isolate_leader(n: Nemesis, stop, el) -> None:
    while not stop.is_set():
        lead = n.leader()
        if lead is not None:
            others = [m for m in n.members() if m is not lead]
            n.partition([[lead], others], "isolated leader")
            n.expect_new_leader(others, lead, 10 * el + 10)
            hold(stop, n.rng, 3 * el, 6 * el)
            n.heal_net()
        hold(stop, n.rng, 2 * el, 4 * el)


def sched_bridge(n: Nemesis, stop, el) -> None:
    while not stop.is_set():
        n.bridge()
        hold(stop, n.rng, 3 * el, 6 * el)
        n.heal_net()
        hold(stop, n.rng, 2 * el, 4 * el)


def sched_one_way(n: Nemesis, stop, el) -> None:
    while not stop.is_set():
        lead = n.leader()
        if lead is not None:
            others = [m for m in n.members() if m is not lead]
            if n.rng.random() < 0.5:
                n.one_way(lead, others, "leader's messages lost")
            else:
                for o in others:
                    n.one_way(o, [lead], "messages to the leader lost")
            hold(stop, n.rng, 3 * el, 6 * el)
            n.heal_net()
        hold(stop, n.rng, 2 * el, 4 * el)


def sched_kill(target: str) -> Callable:
    def run(n: Nemesis, stop, el) -> None:
        while not stop.is_set():
            lead = n.leader()
            if target == "leader":
                victims = [lead] if lead else []
            elif target == "follower":
                victims = [m for m in n.members() if m is not lead][:1]
                if n.rng.random() < 0.5:
                    victims = [m for m in n.members() if m is not lead][-1:]
            else:
                victims = [n.rng.choice(n.members())]
            for v in victims:
                n.kill(v, target)
            if target == "leader" and lead is not None:
                n.expect_new_leader([m for m in n.members() if m is not lead], lead,
                                    10 * el + 10)
            hold(stop, n.rng, 2 * el, 5 * el)
            n.restart_all()
            hold(stop, n.rng, 3 * el, 5 * el)
    return run


def sched_pause(target: str) -> Callable:
    def run(n: Nemesis, stop, el) -> None:
        while not stop.is_set():
            lead = n.leader()
            if target == "leader":
                v = lead
            else:
                fs = [m for m in n.members() if m is not lead]
                v = n.rng.choice(fs) if fs else None
            if v is not None:
                n.pause(v, target)
                if v is lead:
                    n.expect_new_leader([m for m in n.members() if m is not lead], lead,
                                        10 * el + 10)
                hold(stop, n.rng, 2 * el, 5 * el)  # longer than the election timeout
                n.resume_all()
            hold(stop, n.rng, 2 * el, 4 * el)
    return run


def sched_slow(n: Nemesis, stop, el) -> None:
    while not stop.is_set():
        n.slow_net(n.rng.choice([10, 30, 60]), n.rng.choice([10, 50, 100]),
                   n.rng.choice([0.0, 0.05, 0.2]))
        hold(stop, n.rng, 3 * el, 8 * el)
        n.heal_net()
        hold(stop, n.rng, 1 * el, 3 * el)


def sched_snapshot(n: Nemesis, stop, el) -> None:
    """A follower cut off while the others write past --snapshot-count, then
    healed: it can only catch up from a snapshot (checked after the run)."""
    lead = n.leader()
    fs = [m for m in n.members() if m is not lead]
    v = n.rng.choice(fs)
    n.snapshot_member = v
    n.partition([[v], [m for m in n.members() if m is not v]], "lagging follower")
    hold(stop, n.rng, 12 * el, 16 * el)
    n.heal_net()
    stop.wait()


def sched_disk_full(n: Nemesis, stop, el) -> None:
    """Fill the disk of the member whose data dir is a small tmpfs, hold,
    free it.  The member must refuse or stop, never lose an acknowledged
    write; if it stopped, it is restarted once there is space again."""
    v = n.c.disk_member
    while not stop.is_set():
        hold(stop, n.rng, 2 * el, 4 * el)
        filler = v.data_dir / "filler"
        st = os.statvfs(v.data_dir)
        free = st.f_bavail * st.f_frsize
        with open(filler, "wb") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, max(0, free - 64 * 1024))
            except OSError:
                pass
        n.note(f"disk full on {v.name} ({free >> 20} MiB taken)")
        # Large writes to a key of their own (not in the history) make the
        # member need new space soon: a new WAL segment, a store flush.
        ballast_stop = threading.Event()
        counts = {"ok": 0, "err": 0, "last": ""}

        def ballast():
            value = b"x" * (1 << 20)
            with n.c.members[0].channel() as ch:
                kv = pbg.KVStub(ch)
                # At most 120 MiB per fill: enough to need a new WAL segment
                # (64 MiB) while the disk is full, while everything written
                # still fits the tmpfs once the filler is gone (the store
                # keeps every version until compaction, so an unbounded
                # ballast outgrows the disk and the restarted member fails
                # for a reason that is not the fault under test).
                while not ballast_stop.is_set() and counts["ok"] < 120:
                    try:
                        kv.Put(pb.PutRequest(key=b"ballast", value=value), timeout=2)
                        counts["ok"] += 1
                    except grpc.RpcError as e:
                        counts["err"] += 1
                        counts["last"] = f"{e.code().name}: {e.details()}"
                        ballast_stop.wait(0.05)  # client pacing after an error
        bt = threading.Thread(target=ballast, daemon=True)
        bt.start()
        hold(stop, n.rng, 6 * el, 10 * el)
        ballast_stop.set()
        bt.join(timeout=10)
        n.note(f"{counts['ok']} large puts ok, {counts['err']} refused (last: "
               f"{counts['last'] or '-'}); {v.name} "
               f"{'running' if v.running() else 'stopped'}")
        filler.unlink()
        n.note(f"disk space back on {v.name}")
        if not v.running():
            # The last lines before the stack a dying member prints.
            text = v.log_since_last_start().split("keel: fatal signal; stack:")[0]
            tail = "\n".join(text.splitlines()[-3:])
            n.disk_exits.append(f"exit {v.proc.returncode}: {tail}")
            n.note(f"{v.name} had stopped (exit {v.proc.returncode}); restart")
            v.start()


def sched_membership(n: Nemesis, stop, el) -> None:
    """Under load: remove a follower (MemberRemove), then add a new member
    (MemberAdd, started with --initial-cluster-state existing) that must
    catch up and serve; the cluster keeps its size."""
    c = n.c
    while not stop.is_set():
        lead = n.leader()
        if lead is None:
            continue
        v = n.rng.choice([m for m in c.members if m is not lead])

        def remove():
            # etcd refuses while a member has not been active long enough
            # ("unhealthy cluster"): retried until the deadline.
            with lead.channel() as ch:
                pbg.ClusterStub(ch).MemberRemove(pb.MemberRemoveRequest(ID=v.member_id),
                                                 timeout=10)
            return True
        wait_for(remove, 30, f"MemberRemove {v.name}", interval=0.2)
        n.note(f"MemberRemove {v.name}")
        c.members.remove(v)
        v.kill()
        hold(stop, n.rng, 1 * el, 3 * el)
        new = FaultMember(c, f"m{c.next_index}", c.base)
        c.next_index += 1
        new.joining = True
        def add():
            lead = n.leader()
            with (lead or c.members[0]).channel() as ch:
                return pbg.ClusterStub(ch).MemberAdd(
                    pb.MemberAddRequest(peerURLs=[new.peer_url]), timeout=10)
        r = wait_for(add, 30, f"MemberAdd {new.name}", interval=0.2)
        new.member_id = r.member.ID
        c.members.append(new)
        new.start()
        n.note(f"MemberAdd {new.name} ({new.member_id:x}) and start it")
        new.wait_healthy(30)
        n.note(f"{new.name} is healthy")
        hold(stop, n.rng, 3 * el, 6 * el)


def sched_mixed(n: Nemesis, stop, el) -> None:
    faults = ["partition", "isolate", "kill-leader", "kill-follower", "pause-leader",
              "pause-follower", "slow", "one-way"]
    if len(n.members()) >= 5:
        faults.append("bridge")
    while not stop.is_set():
        f = n.rng.choice(faults)
        lead = n.leader()
        others = [m for m in n.members() if m is not lead]
        if f == "partition":
            ms = n.members()
            n.rng.shuffle(ms)
            n.partition([ms[:len(ms) // 2], ms[len(ms) // 2:]], "minority/majority")
        elif f == "isolate" and lead:
            n.partition([[lead], others], "isolated leader")
        elif f == "bridge":
            n.bridge()
        elif f == "one-way" and lead:
            n.one_way(lead, others, "leader's messages lost")
        elif f == "kill-leader" and lead:
            n.kill(lead, "leader")
        elif f == "kill-follower" and others:
            n.kill(n.rng.choice(others), "follower")
        elif f == "pause-leader" and lead:
            n.pause(lead, "leader")
        elif f == "pause-follower" and others:
            n.pause(n.rng.choice(others), "follower")
        elif f == "slow":
            n.slow_net(30, 50, 0.1)
        hold(stop, n.rng, 2 * el, 6 * el)
        n.heal_all()
        hold(stop, n.rng, 2 * el, 4 * el)


SCHEDULES: dict[str, Callable] = {
    "none": sched_none,
    "partition-majority": sched_partition_majority,
    "isolate-leader": sched_isolate_leader,
    "bridge": sched_bridge,
    "one-way": sched_one_way,
    "kill-leader": sched_kill("leader"),
    "kill-follower": sched_kill("follower"),
    "kill-random": sched_kill("random"),
    "pause-leader": sched_pause("leader"),
    "pause-follower": sched_pause("follower"),
    "slow-lossy": sched_slow,
    "snapshot-catchup": sched_snapshot,
    "disk-full": sched_disk_full,
    "membership": sched_membership,
    "mixed": sched_mixed,
}


# ---------------------------------------------------------------------------
# checks after the run


def converge(c: FaultCluster, timeout: float) -> int:
    """All members up, one leader, the same applied revision; returns it."""
    c.wait_ready(timeout)

    def same_revision():
        revs = set()
        for m in c.members:
            with m.channel() as ch:
                r = pbg.KVStub(ch).Range(pb.RangeRequest(key=b"\0", serializable=True),
                                         timeout=2)
                revs.add(r.header.revision)
        return revs.pop() if len(revs) == 1 else None

    return wait_for(same_revision, timeout, "every member at the same revision")


def check_hashes(c: FaultCluster, rev: int) -> list[str]:
    hashes = {}
    for m in c.members:
        with m.channel() as ch:
            r = pbg.MaintenanceStub(ch).HashKV(pb.HashKVRequest(revision=rev), timeout=5)
            hashes[m.name] = (r.hash, r.header.revision)
    if len({h for h, _ in hashes.values()}) != 1:
        return [f"HashKV at revision {rev} differs between members: {hashes}"]
    return []


def check_acknowledged(c: FaultCluster, ops: list[dict]) -> list[str]:
    """Each acknowledged write is in the store at its revision, on every member."""
    writes = [o for o in ops if o["outcome"] == "ok" and (
        o["type"] == "put" or (o["type"] == "cas" and o.get("succeeded"))
        or (o["type"] == "delete" and o.get("deleted", 0) > 0))]
    problems = []
    for m in c.members:
        with m.channel() as ch:
            kv = pbg.KVStub(ch)
            for i in range(0, len(writes), 100):
                batch = writes[i:i + 100]
                req = pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(
                    key=o["key"].encode(), revision=o["revision"], serializable=True))
                    for o in batch])
                resp = kv.Txn(req, timeout=10)
                for o, r in zip(batch, resp.responses):
                    kvs = r.response_range.kvs
                    if o["type"] == "delete":
                        if kvs:
                            problems.append(f"{m.name}: op {o['id']} deleted {o['key']} at "
                                            f"revision {o['revision']}, yet it is there")
                    elif not kvs or kvs[0].value.decode() != o["value"] or \
                            kvs[0].mod_revision != o["revision"]:
                        got = (kvs[0].value.decode(), kvs[0].mod_revision) if kvs else None
                        problems.append(f"{m.name}: acknowledged op {o['id']} put {o['key']}="
                                        f"{o['value']} at revision {o['revision']}; the "
                                        f"store has {got}")
                if len(problems) > 20:
                    return problems
    return problems


def run_lincheck(lincheck: str, path: Path) -> tuple[bool, dict, str]:
    p = subprocess.run([lincheck, str(path)], capture_output=True, text=True, timeout=1800)
    try:
        verdict = json.loads(p.stdout)
    except json.JSONDecodeError:
        verdict = {}
    return p.returncode == 0, verdict, p.stderr


# ---------------------------------------------------------------------------
# the HTML timeline


def op_label(o: dict) -> str:
    t = o["type"]
    if t == "get":
        r = (f"{o.get('read_value')}@{o.get('read_mod_revision')}" if o.get("found")
             else "absent") if o["outcome"] == "ok" else "?"
        return f"get {o['key']} -> {r} (rev {o.get('revision', '?')})"
    if t == "put":
        return f"put {o['key']}={o.get('value')} (rev {o.get('revision', '?')})"
    if t == "delete":
        return f"del {o['key']} -> {o.get('deleted', '?')} (rev {o.get('revision', '?')})"
    cond = f"{o.get('cmp')}={o.get('expect_value', '')}"
    res = "ok" if o.get("succeeded") else (
        f"no, saw {o.get('read_value') if o.get('found') else 'absent'}")
    return f"cas {o['key']} {cond} -> {o.get('value')}: {res} (rev {o.get('revision', '?')})"


def focus_svg(ops: list[dict], focus: set[int], events: list[tuple[int, str]]) -> str:
    """A readable close-up: the ops on the failing key(s) around the ops the
    checker could not place, one labelled bar each."""
    by_id = {o["id"]: o for o in ops}
    fo = [by_id[i] for i in focus if i in by_id]
    if not fo:
        return ""
    keys = {o["key"] for o in fo}
    lo = min(o["call_ns"] for o in fo) - 300_000_000
    hi = max((o.get("return_ns") or o["call_ns"]) for o in fo) + 100_000_000
    near = [o for o in ops if (o["key"] in keys or o["id"] in focus) and o["outcome"] != "fail"
            and o["call_ns"] <= hi and (o.get("return_ns") or hi) >= lo]
    near.sort(key=lambda o: o["call_ns"])
    near = near[-80:]
    lo = min(lo, min(o["call_ns"] for o in near))
    width, scale = 1400.0, 1400.0 / max(1, hi - lo)
    rows = []
    for i, o in enumerate(near):
        x = (o["call_ns"] - lo) * scale
        end = o.get("return_ns") if o["outcome"] == "ok" else hi
        w = max(3.0, (end - o["call_ns"]) * scale)
        y = 20 + i * 20
        c = "#e05050" if o["id"] in focus else {"ok": "#8fd18f", "unknown": "#f2c14e"}.get(
            o["outcome"], "#d0d0d0")
        rows.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" fill="{c}" '
                    f'stroke="#555" stroke-width="0.3"/>')
        rows.append(f'<text x="{min(x, width - 300) + 3:.1f}" y="{y + 12}" font-size="11">'
                    f'#{o["id"]} p{o["process"]}/m{o.get("member")} '
                    f'{html.escape(op_label(o))}</text>')
    h = 30 + len(near) * 20
    for t, text in events:
        if lo <= t <= hi:
            x = (t - lo) * scale
            rows.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{h}" stroke="#a040a0" '
                        f'stroke-dasharray="4"/><text x="{x + 2:.1f}" y="10" font-size="9" '
                        f'fill="#a040a0">{html.escape(text[:60])}</text>')
    return (f"<h4>Close-up: key(s) {html.escape(', '.join(sorted(keys)))}, "
            f"{(hi - lo) / 1e6:.0f} ms (red: could not be placed)</h4>"
            f"<svg width='{width + 20}' height='{h}'>" + "".join(rows) + "</svg>")


def write_timeline(path: Path, ops: list[dict], events: list[tuple[int, str]],
                   verdict: dict, title: str) -> None:
    if not ops:
        path.write_text("<p>empty history</p>")
        return
    t0 = min(o["call_ns"] for o in ops)
    t1 = max(max(o.get("return_ns", 0), o["call_ns"]) for o in ops) + 1
    bad: set[int] = set()
    prefix_last: set[int] = set()
    for k in verdict.get("keys", []):
        if not k.get("ok", True):
            bad.update(k.get("stuck", []))
            if k.get("best_prefix"):
                prefix_last.add(k["best_prefix"][-1])
    procs = sorted({o["process"] for o in ops})
    lane = {p: i for i, p in enumerate(procs)}
    width = 1800.0
    scale = width / (t1 - t0)
    rows = []
    color = {"ok": "#8fd18f", "unknown": "#f2c14e", "fail": "#d0d0d0"}
    for o in ops:
        x = (o["call_ns"] - t0) * scale
        end = o.get("return_ns") if o["outcome"] == "ok" else t1
        w = max(2.0, (end - o["call_ns"]) * scale)
        y = 30 + lane[o["process"]] * 22
        c = "#e05050" if o["id"] in bad else ("#5080e0" if o["id"] in prefix_last
                                              else color[o["outcome"]])
        desc = json.dumps(o, sort_keys=True)
        label = f'{o["type"]} {o["key"]}'
        rows.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="18" fill="{c}" '
                    f'stroke="#555" stroke-width="0.3"><title>{html.escape(desc)}</title></rect>')
        if w > 60:
            rows.append(f'<text x="{x + 2:.1f}" y="{y + 13}" font-size="10">'
                        f'{html.escape(label)}</text>')
    height = 40 + len(procs) * 22
    for t, text in events:
        x = (t - t0) * scale
        rows.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#a040a0" '
                    f'stroke-dasharray="4"><title>{html.escape(text)}</title></line>')
        rows.append(f'<text x="{x + 2:.1f}" y="12" font-size="9" fill="#a040a0">'
                    f'{html.escape(text[:40])}</text>')
    for p in procs:
        rows.append(f'<text x="0" y="{30 + lane[p] * 22 + 13}" font-size="10">p{p}</text>')
    failing = [k for k in verdict.get("keys", []) if not k.get("ok", True)]
    focus: set[int] = set()
    if failing:
        focus = set(failing[0].get("stuck", []))
        if failing[0].get("best_prefix"):
            focus.add(failing[0]["best_prefix"][-1])
    elif verdict.get("global_violations"):
        focus = {int(x) for x in re.findall(r"op (\d+)", verdict["global_violations"][0])}
    closeup = focus_svg(ops, focus, events)
    summary = html.escape(json.dumps({"global_violations": verdict.get("global_violations"),
                                      "failing_keys": failing}, indent=1))
    table = []
    interesting = bad | prefix_last
    for o in sorted(ops, key=lambda o: o["call_ns"]):
        if failing and o["key"] not in {k["key"] for k in failing}:
            continue
        mark = " style='background:#f6b0b0'" if o["id"] in interesting else ""
        table.append(
            f"<tr{mark}><td>{o['id']}</td><td>p{o['process']}/m{o.get('member')}</td>"
            f"<td>{(o['call_ns'] - t0) / 1e6:.1f}</td>"
            f"<td>{((o.get('return_ns') or t1) - t0) / 1e6:.1f}</td>"
            f"<td>{o['type']} {html.escape(o['key'])} {html.escape(o.get('value', ''))} "
            f"{html.escape(o.get('cmp', ''))} {html.escape(o.get('expect_value', ''))}</td>"
            f"<td>{o['outcome']} rev={o.get('revision', '')} found={o.get('found', '')} "
            f"read={html.escape(str(o.get('read_value', '')))}@{o.get('read_mod_revision', '')} "
            f"ok={o.get('succeeded', '')} deleted={o.get('deleted', '')} "
            f"{html.escape(o.get('error', ''))}</td></tr>")
        if len(table) > 3000:
            break
    path.write_text(
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h3>{html.escape(title)}</h3>"
        "<p>One lane per client process; green: ok, yellow: unknown outcome (drawn to the "
        "end), grey: failed, red: ops the checker could not linearize next, blue: the last "
        "op of the longest linearizable prefix. Purple lines: faults. Hover for details.</p>"
        f"<pre>{summary}</pre>{closeup}<h4>Whole run</h4>"
        f"<div style='overflow-x:scroll'><svg width='{width + 40}' height='{height}'>"
        + "".join(rows) + "</svg></div>"
        "<table border=1 cellspacing=0 style='font:11px monospace'><tr><th>id</th>"
        "<th>proc/member</th><th>call ms</th><th>return ms</th><th>op</th><th>result</th></tr>"
        + "".join(table) + "</table></body></html>")


# ---------------------------------------------------------------------------
# one run


class RunConfig:
    def __init__(self, schedule: str, seed: int, members: int, clients: int, duration: float,
                 unsafe_reads: bool = False, expect_failure: bool = False, keys: int = 8):
        self.schedule = schedule
        self.seed = seed
        self.members = members
        self.clients = clients
        self.duration = duration
        self.unsafe_reads = unsafe_reads
        self.expect_failure = expect_failure
        self.keys = keys

    def replay(self) -> str:
        cmd = (f"/usr/bin/python3 tests/jepsen/runner.py --schedule {self.schedule} "
               f"--seed {self.seed} --members {self.members} --clients {self.clients} "
               f"--duration {self.duration:g} --keys {self.keys}")
        if self.unsafe_reads:
            cmd += " --unsafe-skip-read-index"
        return cmd


def run_one(cfg: RunConfig, keel: str, lincheck: str, out_root: Path,
            election_ms: int = 500) -> bool:
    """Runs one schedule; returns True if the outcome is the expected one."""
    out = out_root / (f"{cfg.schedule}-n{cfg.members}-s{cfg.seed}"
                      + ("-unsafe" if cfg.unsafe_reads else ""))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"== jepsen: schedule={cfg.schedule} seed={cfg.seed} members={cfg.members} "
          f"clients={cfg.clients} duration={cfg.duration:g}s"
          f"{' UNSAFE reads (expected to fail)' if cfg.unsafe_reads else ''}", flush=True)
    os.environ["KEEL_BIN"] = keel
    rng = random.Random(cfg.seed)
    flags = {}
    if cfg.schedule == "snapshot-catchup":
        flags["snapshot-count"] = 200
    cluster = FaultCluster(out / "cluster", cfg.members, cfg.unsafe_reads, flags)
    mounted: Optional[Path] = None
    if cfg.schedule == "disk-full":
        # One member's data dir on a tmpfs (root only): room for the WAL's
        # 64 MiB segments and the store with every ballast version, then
        # the nemesis fills what is free.
        cluster.disk_member = cluster.members[rng.randrange(cfg.members)]
        d = cluster.disk_member.data_dir
        d.mkdir(parents=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640m", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  SKIP disk-full: cannot mount a tmpfs ({r.stderr.strip()}); "
                  "this schedule needs root", flush=True)
            return True
        mounted = d
    cluster.election_ms = election_ms
    cluster.heartbeat_ms = max(10, election_ms // 10)
    history = History()
    problems: list[str] = []
    verdict: dict = {}
    nemesis: Optional[Nemesis] = None
    started = time.monotonic()
    skipped = False
    try:
        cluster.start(timeout=60)
        for m in cluster.members:
            m.member_id = wait_for(lambda m=m: status(m).header.member_id, 20,
                                   f"{m.name}'s member id")
        if cfg.schedule == "membership" and not membership_supported(cluster.members[0]):
            print("  SKIP membership: this keel has no MemberAdd/MemberRemove", flush=True)
            skipped = True
            return True
        stop_clients = threading.Event()
        stop_nemesis = threading.Event()
        keys = [f"k{i}" for i in range(cfg.keys)]
        clients = [Client(p, cluster.members[p % cfg.members], keys, cfg.seed * 1000 + p,
                          history, stop_clients, op_timeout=max(2.0, 4 * election_ms / 1000))
                   for p in range(cfg.clients)]
        watchers: list[Watcher] = []
        if watch_supported(cluster.members[0]):
            for m in {cluster.members[0].name: cluster.members[0],
                      cluster.members[-1].name: cluster.members[-1]}.values():
                watchers.append(Watcher(m.name, m, threading.Event()))
        else:
            print("  (no Watch service: watch checks skipped)", flush=True)
        nemesis = Nemesis(cluster, history, random.Random(rng.getrandbits(64)))
        schedule = SCHEDULES[cfg.schedule]
        nemesis_error: list[BaseException] = []

        def nemesis_main():
            try:
                schedule(nemesis, stop_nemesis, election_ms / 1000)
            except BaseException as e:  # noqa: BLE001 - reported below
                nemesis_error.append(e)
                traceback.print_exc()

        for cl in clients:
            cl.start()
        for w in watchers:
            w.start()
        nt = threading.Thread(target=nemesis_main, name="nemesis", daemon=True)
        nt.start()
        stop_nemesis.wait(cfg.duration)  # the run's length, by design
        stop_nemesis.set()
        nt.join(timeout=60)
        nemesis.heal_all()
        # Clients keep going a little after healing: the cluster must serve again.
        stop_clients.wait(max(2.0, 4 * election_ms / 1000))
        stop_clients.set()
        for cl in clients:
            cl.join(timeout=30)
        if nemesis_error:
            problems.append(f"nemesis failed: {nemesis_error[0]!r}")
        try:
            rev = converge(cluster, 90)
            problems += check_hashes(cluster, rev)
            problems += check_acknowledged(cluster, history.ops)
            for w in watchers:
                w.stop_event.set()
                w.cancel()
                w.join(timeout=30)
            if watchers:
                problems += check_watches(cluster, watchers, history.ops)
                print(f"  watch: {sum(len(w.events) for w in watchers)} events on "
                      f"{len(watchers)} watchers, {sum(w.streams for w in watchers)} "
                      f"streams", flush=True)
        except Exception as e:  # noqa: BLE001 - reported; the history is still checked
            problems.append(f"after healing, the cluster did not converge: {e!r}")
            for m in cluster.members:
                if not m.running():
                    problems.append(f"{m.name} is not running (exit {m.proc.returncode}); "
                                    f"log: {m.log_path}")
        for e in (nemesis.disk_exits if nemesis else []):
            print(f"  the member with the full disk stopped: {e}", flush=True)
            if "ENOSPC" not in e and "No space" not in e and "space" not in e:
                problems.append(f"the member with the full disk stopped without saying "
                                f"its disk is full: {e}")
        if cfg.schedule == "snapshot-catchup":
            lagger = getattr(nemesis, "snapshot_member", None)
            if lagger and "restored the store from a received database snapshot" not in lagger.log():
                problems.append(f"{lagger.name} was expected to catch up from a snapshot, "
                                f"but its log shows no snapshot restore")
    except Exception as e:  # noqa: BLE001 - any failure of the run is reported
        problems.append(f"run failed: {e!r}")
        traceback.print_exc()
    finally:
        for w in locals().get("watchers", []):
            w.stop_event.set()
            w.cancel()
        if nemesis is not None:
            try:
                nemesis.resume_all()
            except Exception:  # noqa: BLE001
                pass
        cluster.stop()
        if mounted is not None:
            subprocess.run(["umount", "-l", str(mounted)], capture_output=True)
        if skipped:
            shutil.rmtree(out, ignore_errors=True)
    try:
        hist_path = out / "history.jsonl"
        history.write(hist_path)
        lin_ok, verdict, lin_err = run_lincheck(lincheck, hist_path)
        print("  " + lin_err.strip().replace("\n", "\n  "), flush=True)
        if not lin_ok:
            problems.append("history is not linearizable" if not verdict.get("gave_up")
                            else "linearizability undecided (search bound)")
    except Exception as e:  # noqa: BLE001
        problems.append(f"checking the history failed: {e!r}")

    ops = history.ops
    n_ok = sum(o["outcome"] == "ok" for o in ops)
    n_unknown = sum(o["outcome"] == "unknown" for o in ops)
    print(f"  {len(ops)} ops ({n_ok} ok, {n_unknown} unknown) in "
          f"{time.monotonic() - started:.1f}s", flush=True)
    failed = bool(problems)
    title = (f"keel jepsen {cfg.schedule} seed={cfg.seed} members={cfg.members}"
             f"{' unsafe' if cfg.unsafe_reads else ''}")
    if failed:
        timeline = out / "timeline.html"
        write_timeline(timeline, ops, history.events, verdict, title)
        print(("  EXPECTED FAILURE (the checker caught the broken mode):" if cfg.expect_failure
               else "  FAILURE:"), flush=True)
        for p in problems[:30]:
            print(f"    - {p}")
        print(f"  seed: {cfg.seed}   schedule: {cfg.schedule}")
        print("  schedule that ran:")
        for line in (nemesis.log if nemesis else []):
            print(f"    {line}")
        print(f"  replay: {cfg.replay()}")
        print(f"  history: {out / 'history.jsonl'}")
        print(f"  timeline: {timeline}")
        print(f"  member logs: {out / 'cluster'}", flush=True)
    else:
        print("  PASS" if not cfg.expect_failure else
              "  UNEXPECTED PASS: the broken mode was not caught", flush=True)
        if not cfg.expect_failure:
            shutil.rmtree(out / "cluster", ignore_errors=True)  # data dirs are large
    if failed and cfg.expect_failure:
        for d in (out / "cluster").glob("*.data"):
            shutil.rmtree(d, ignore_errors=True)  # keep the logs and the history
    return failed == cfg.expect_failure


# The CI set: fixed seeds, a few minutes in all.
CI_RUNS = [
    RunConfig("partition-majority", 1, 3, 10, 8),
    RunConfig("isolate-leader", 2, 5, 10, 8),
    RunConfig("kill-leader", 3, 3, 10, 10),
    RunConfig("pause-leader", 4, 3, 10, 8),
    RunConfig("bridge", 5, 5, 10, 8),
    RunConfig("one-way", 6, 3, 10, 8),
    RunConfig("slow-lossy", 7, 3, 10, 8),
    RunConfig("kill-follower", 8, 5, 10, 8),
    RunConfig("snapshot-catchup", 9, 3, 10, 10),
    RunConfig("disk-full", 11, 3, 10, 8),
    RunConfig("membership", 12, 3, 10, 10),
    # The broken mode must be caught; the same schedule passes without it.
    RunConfig("isolate-leader", 10, 3, 10, 6),
    RunConfig("isolate-leader", 10, 3, 10, 6, unsafe_reads=True, expect_failure=True),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedule", choices=sorted(SCHEDULES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--members", type=int, default=3, choices=[3, 5])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--election-ms", type=int, default=500)
    ap.add_argument("--unsafe-skip-read-index", action="store_true",
                    help="start members in the broken mode; the run must then fail")
    ap.add_argument("--ci", action="store_true", help="run the fixed CI set")
    ap.add_argument("--only", help="with --ci: run only the runs whose schedule has this text")
    ap.add_argument("--long", action="store_true",
                    help="random schedules and seeds until --hours pass (needs KEEL_JEPSEN_LONG=1)")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--keel", default=os.environ.get("KEEL_BIN",
                                                     default_bin("keel", "src/cmd")))
    ap.add_argument("--lincheck", default=os.environ.get(
        "KEEL_LINCHECK", default_bin("keel-lincheck", "tests/jepsen")))
    ap.add_argument("--out", default=os.environ.get("KEEL_JEPSEN_OUT", ""))
    a = ap.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="keel-jepsen-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"jepsen output under {out}", flush=True)

    if a.ci:
        runs = [r for r in CI_RUNS if not a.only or a.only in r.schedule]
        bad = [r for r in runs if not run_one(r, a.keel, a.lincheck, out)]
        print(f"jepsen CI: {len(runs) - len(bad)}/{len(runs)} runs as expected", flush=True)
        return 1 if bad else 0
    if a.long:
        if os.environ.get("KEEL_JEPSEN_LONG") != "1":
            print("--long runs for hours: set KEEL_JEPSEN_LONG=1 to confirm", file=sys.stderr)
            return 2
        master = random.Random(a.seed)
        deadline = time.monotonic() + a.hours * 3600
        n = failures = 0
        while time.monotonic() < deadline:
            cfg = RunConfig(master.choice([s for s in SCHEDULES if s != "none"]),
                            master.randrange(1, 1 << 30), master.choice([3, 5]),
                            master.choice([10, 16]), master.choice([30, 60, 120]))
            n += 1
            if not run_one(cfg, a.keel, a.lincheck, out):
                failures += 1
        print(f"jepsen long: {n - failures}/{n} runs passed", flush=True)
        return 1 if failures else 0
    if not a.schedule:
        ap.error("--schedule, --ci or --long")
    cfg = RunConfig(a.schedule, a.seed, a.members, a.clients, a.duration,
                    unsafe_reads=a.unsafe_skip_read_index,
                    expect_failure=a.unsafe_skip_read_index, keys=a.keys)
    return 0 if run_one(cfg, a.keel, a.lincheck, out, a.election_ms) else 1


if __name__ == "__main__":
    sys.exit(main())
