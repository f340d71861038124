"""Watch: the stream's responses as etcd sends them (created, events, cancel,
client-chosen ids, compaction, future and historical starts, filters,
prev_kv, progress, fragment), etcdctl and python3-etcd3 watches, a client
that does not read, many watchers, and a watch that resumes on another member
across a kill of the leader without a gap or a repeat."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time

import grpc
import pytest
from etcd3 import etcdrpc

from cluster import ETCDCTL_BIN, LoadWriter, decode_kvs, pipelined_puts, wait_for
from watchpb import DELETE, NODELETE, NOPUT, PUT, RawWatch, StreamEnded


def prefix_end(p: bytes) -> bytes:
    b = bytearray(p)
    while b and b[-1] == 0xFF:
        b.pop()
    b[-1] += 1
    return bytes(b)


def cur_rev(c) -> int:
    return c.kvstub.Range(etcdrpc.RangeRequest(key=b"\0"), timeout=5).header.revision


def put(c, k: bytes, v: bytes) -> int:
    return c.kvstub.Put(etcdrpc.PutRequest(key=k, value=v), timeout=5).header.revision


def ev(e) -> tuple:
    return ("PUT" if e.type == PUT else "DELETE", e.kv.key, e.kv.value, e.kv.mod_revision)


@pytest.fixture
def watch_factory():
    made = []

    def make(endpoint, **kw):
        w = RawWatch(endpoint, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def test_created_events_txn_and_cancel(member, uniq, watch_factory):
    c = member.client()
    p = uniq.encode()
    w = watch_factory(member.endpoint)
    w.create(p, prefix_end(p))
    r = w.next()
    assert (r.created, r.canceled, r.watch_id) == (True, False, 0)
    assert r.header.revision == cur_rev(c)
    assert r.header.member_id != 0 and r.header.cluster_id != 0

    r1 = put(c, p + b"a", b"1")
    r2 = put(c, p + b"a", b"2")
    t = c.kvstub.Txn(etcdrpc.TxnRequest(success=[
        etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=p + b"b", value=b"x")),
        etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=p + b"c", value=b"y"))]), timeout=5)
    r3 = t.header.revision
    r4 = c.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(key=p + b"a"), timeout=5).header.revision
    got = [w.next() for _ in range(4)]
    assert [r.header.revision for r in got] == [r1, r2, r3, r4]
    assert [len(r.events) for r in got] == [1, 1, 2, 1], "a txn's events come in one response"
    e = got[0].events[0]
    assert (e.kv.create_revision, e.kv.mod_revision, e.kv.version) == (r1, r1, 1)
    e = got[1].events[0]
    assert (e.kv.create_revision, e.kv.mod_revision, e.kv.version) == (r1, r2, 2)
    assert [ev(e) for e in got[2].events] == [("PUT", p + b"b", b"x", r3), ("PUT", p + b"c", b"y", r3)]
    d = got[3].events[0]
    assert d.type == DELETE and d.kv.key == p + b"a" and d.kv.mod_revision == r4
    assert (d.kv.create_revision, d.kv.version, d.kv.value) == (0, 0, b"")

    w.cancel(0)
    r = w.next()
    assert (r.canceled, r.watch_id, len(r.events)) == (True, 0, 0)
    assert r.header.revision == r4
    w.cancel(0)  # unknown now: etcd answers nothing
    put(c, p + b"a", b"3")
    w.progress()
    r = w.next()
    assert r.watch_id == -1 and not r.events, f"an event after the cancel: {r}"


def test_watch_ids_auto_chosen_and_errors(member, uniq, watch_factory):
    c = member.client()
    k = (uniq + "k").encode()
    w = watch_factory(member.endpoint)
    w.create(k, watch_id=7)
    w.create(k)
    w.create(k)
    got = [w.next() for _ in range(3)]
    assert [(r.created, r.canceled, r.watch_id) for r in got] == [(True, False, 7), (True, False, 0),
                                                                (True, False, 1)]
    w.create(k, watch_id=1)
    r = w.next()
    assert (r.created, r.canceled, r.watch_id) == (True, True, -1)
    assert r.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
    w.create(k, range_end=b"\x01")  # k > "\x01": an empty range
    r = w.next()
    assert (r.created, r.canceled, r.watch_id) == (True, True, -1)
    assert r.cancel_reason == "mvcc: watcher range is empty"
    rev = put(c, k, b"v")
    got = [w.next() for _ in range(3)]
    assert sorted(r.watch_id for r in got) == [0, 1, 7]
    assert all(ev(r.events[0]) == ("PUT", k, b"v", rev) for r in got)


def test_history_prev_kv_and_filters(member, uniq, watch_factory):
    c = member.client()
    k = (uniq + "k").encode()
    r1 = put(c, k, b"a")
    r2 = put(c, k, b"b")
    r3 = c.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(key=k), timeout=5).header.revision
    r4 = put(c, k, b"c")
    w = watch_factory(member.endpoint)
    w.create(k, start_revision=r1, prev_kv=True, watch_id=1)
    w.create(k, start_revision=r1, filters=[NOPUT], watch_id=2)
    w.create(k, start_revision=r1, filters=[NODELETE], watch_id=3)
    # Each watcher's created response comes before its events; another
    # watcher's events may come in between.
    _, resps = w.events_until(4 + 1 + 3)
    while sum(r.created for r in resps) < 3:
        resps.append(w.next())
    per = {1: [], 2: [], 3: []}
    for i in per:
        mine = [r for r in resps if r.watch_id == i]
        assert mine[0].created and not any(r.created for r in mine[1:])
    for r in resps:
        per[r.watch_id].extend(r.events)
    evs = per[1]
    assert [ev(e) for e in evs] == [("PUT", k, b"a", r1), ("PUT", k, b"b", r2),
                                    ("DELETE", k, b"", r3), ("PUT", k, b"c", r4)]
    assert [e.HasField("prev_kv") for e in evs] == [False, True, True, False]
    assert evs[1].prev_kv.value == b"a" and evs[2].prev_kv.value == b"b"
    assert evs[2].prev_kv.mod_revision == r2
    assert [ev(e) for e in per[2]] == [("DELETE", k, b"", r3)]
    assert [ev(e)[3] for e in per[3]] == [r1, r2, r4]
    assert not any(e.HasField("prev_kv") for e in per[2] + per[3])


def test_ranges_from_key_and_prefix(member, uniq, watch_factory):
    c = member.client()
    p = uniq.encode()
    w = watch_factory(member.endpoint)
    w.create(p + b"m", b"\0", watch_id=1)  # every key >= p + "m"
    w.create(p + b"a", p + b"c", watch_id=2)  # [a, c)
    assert all(w.next().created for _ in range(2))
    put(c, p + b"c", b"-")  # in neither
    ra = put(c, p + b"b", b"1")
    rz = put(c, p + b"z", b"2")
    got = [w.next() for _ in range(2)]
    assert [(r.watch_id, ev(r.events[0])) for r in got] == [(2, ("PUT", p + b"b", b"1", ra)),
                                                          (1, ("PUT", p + b"z", b"2", rz))]


def test_compacted_start_revision_cancels(member, uniq, watch_factory):
    c = member.client()
    k = (uniq + "k").encode()
    r1 = put(c, k, b"1")
    put(c, k, b"2")
    r3 = put(c, k, b"3")
    c.kvstub.Compact(etcdrpc.CompactionRequest(revision=r3, physical=True), timeout=5)
    w = watch_factory(member.endpoint)
    w.create(k, start_revision=r1)
    r = w.next()
    assert r.created and r.watch_id == 0
    r = w.next()
    assert (r.compact_revision, r.canceled, r.watch_id, len(r.events)) == (r3, True, 0, 0)
    # From the compacted revision itself: served.
    w.create(k, start_revision=r3)
    assert w.next().created
    evs, _ = w.events_until(1)
    assert ev(evs[0]) == ("PUT", k, b"3", r3)


def test_future_start_revision_waits(member, uniq, watch_factory):
    c = member.client()
    k = (uniq + "k").encode()
    rev = cur_rev(c)
    w = watch_factory(member.endpoint)
    w.create(k, start_revision=rev + 3)
    assert w.next().created
    revs = [put(c, k, str(i).encode()) for i in range(4)]
    assert revs == [rev + 1, rev + 2, rev + 3, rev + 4]
    evs, _ = w.events_until(2)
    assert [ev(e) for e in evs] == [("PUT", k, b"2", rev + 3), ("PUT", k, b"3", rev + 4)]


def test_progress_request(member, uniq, watch_factory):
    c = member.client()
    k = (uniq + "k").encode()
    w = watch_factory(member.endpoint)
    w.create(k)
    assert w.next().created
    rev = put(c, k, b"v")
    assert w.next().events[0].kv.mod_revision == rev
    w.progress()
    r = w.next()
    assert (r.watch_id, len(r.events), r.created, r.canceled) == (-1, 0, False, False)
    assert r.header.revision == rev


def test_progress_notify_and_fragment(make_cluster, uniq, watch_factory):
    c = make_cluster(1, extra_flags={"experimental-watch-progress-notify-interval": "200ms",
                                     "max-request-bytes": 300_000})
    m = c[0]
    cl = m.client()
    k = (uniq + "k").encode()
    rev = put(cl, b"/other", b"x")
    w = watch_factory(m.endpoint)
    w.create(k, progress_notify=True)
    assert w.next().created
    r = w.next(timeout=10)
    assert (r.watch_id, len(r.events), r.header.revision) == (0, 0, rev)

    p = (uniq + "f/").encode()
    revs = [put(cl, p + bytes([ord("a") + i]), bytes([ord("0") + i]) * 250_000) for i in range(5)]
    wf = watch_factory(m.endpoint)
    wf.create(p, prefix_end(p), start_revision=revs[0], fragment=True, watch_id=3)
    assert wf.next().created
    evs, resps = wf.events_until(5)
    assert [e.kv.mod_revision for e in evs] == revs
    # etcd's rule: as many events as fit under --max-request-bytes + 512 KiB
    # (at least one), fragment set on every part but the last.
    assert [(len(r.events), r.fragment) for r in resps] == [(3, True), (2, False)]
    assert all(r.watch_id == 3 for r in resps)
    # Without fragment: one response.
    wn = watch_factory(m.endpoint)
    wn.create(p, prefix_end(p), start_revision=revs[0])
    assert wn.next().created
    evs, resps = wn.events_until(5)
    assert len(resps) == 1 and not resps[0].fragment


def test_client_that_does_not_read_never_blocks_writes(member, uniq, watch_factory):
    c = member.client()
    p = (uniq + "s/").encode()
    slow = watch_factory(member.endpoint)
    slow.create(p, prefix_end(p))
    assert slow.next().created
    slow.pause()
    n, size = 240, 100_000  # 24 MB: past any buffer between the store and the client
    items = [(f"{uniq}s/{i:04d}", f"{i:04d}" * (size // 4)) for i in range(n)]
    t0 = time.monotonic()
    for k, v in items:
        put(c, k.encode(), v.encode())  # each must be acknowledged (5 s deadline)
    elapsed = time.monotonic() - t0
    slow.resume()
    evs, _ = slow.events_until(n, timeout=60)
    assert [(e.kv.key.decode(), e.kv.value.decode()) for e in evs] == items
    revs = [e.kv.mod_revision for e in evs]
    assert revs == sorted(set(revs))
    print(f"{n} writes of {size} bytes with a non-reading watcher: {elapsed:.2f} s")


def test_lagging_watchers_get_every_event_once_in_order(member, uniq, watch_factory):
    """Watchers of one key on a stream the client stops reading fall behind;
    the server then sends each of them several revisions per response (etcd:
    a victim's catch-up batch; keel: later events join a watcher's queued
    response). Every watcher still gets every event exactly once, in
    revision order, a revision's events never split, each response for one
    watcher with a header revision covering its events."""
    c = member.client()
    k = (uniq + "k").encode()
    nw, n, size = 20, 300, 4000  # 24 MB to the stream: past any buffer
    w = watch_factory(member.endpoint)
    for i in range(nw):
        w.create(k, watch_id=i + 1)
    assert all(w.next().created for _ in range(nw))
    w.pause()
    want = []
    for i in range(n):
        v = f"{i:04d}".encode() * (size // 4)
        want.append((v, put(c, k, v)))
    w.resume()
    got = {i + 1: [] for i in range(nw)}
    responses = 0
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < nw * n:
        r = w.next(timeout=max(0.1, deadline - time.monotonic()))
        assert not r.canceled and r.watch_id in got
        assert r.events, r
        assert r.header.revision >= r.events[-1].kv.mod_revision
        responses += 1
        got[r.watch_id].extend((e.kv.value, e.kv.mod_revision) for e in r.events)
    for wid, evs in got.items():
        assert evs == want, f"watcher {wid}: {len(evs)} events"
    # Batched: fewer responses than events.
    assert responses < nw * n
    print(f"{nw} watchers x {n} events in {responses} responses")


def test_etcdctl_watch(member, uniq):
    c = member.client()
    k = uniq + "k"
    r1 = put(c, k.encode(), b"a")
    put(c, k.encode(), b"b")
    proc = subprocess.Popen([ETCDCTL_BIN, "--endpoints", member.endpoint, "watch", "--rev", str(r1),
                             "--prefix", "--prev-kv", uniq], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "ETCDCTL_API": "3"})
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l.rstrip("\n")) for l in proc.stdout],
                         daemon=True).start()
        want = ["PUT", k, "a", "PUT", k, "a", k, "b", "PUT", k, "b", k, "c"]
        put(c, k.encode(), b"c")
        got = [lines.get(timeout=10) for _ in want]
        assert got == want
    finally:
        proc.kill()
        proc.wait()

    # Interactive: two watches on one stream.
    proc = subprocess.Popen([ETCDCTL_BIN, "--endpoints", member.endpoint, "watch", "-i"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "ETCDCTL_API": "3"})
    try:
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l.rstrip("\n")) for l in proc.stdout],
                         daemon=True).start()
        proc.stdin.write(f"watch {uniq}x\nwatch --rev {r1} {k}\n")
        proc.stdin.flush()
        got = [lines.get(timeout=10) for _ in range(9)]
        assert got == ["PUT", k, "a", "PUT", k, "b", "PUT", k, "c"]
        put(c, (uniq + "x").encode(), b"1")
        assert [lines.get(timeout=10) for _ in range(3)] == ["PUT", uniq + "x", "1"]
    finally:
        proc.kill()
        proc.wait()


def test_python_etcd3_watches(member, uniq):
    c = member.client()
    p = uniq
    r1 = c.put(p + "a", "1").header.revision
    c.put(p + "b", "2")
    it, cancel = c.watch_prefix(p, start_revision=r1)
    got = []
    for e in it:
        got.append((e.key.decode(), e.value.decode()))
        if len(got) == 3:
            cancel()
        if len(got) == 2:
            c.delete(p + "a")
    assert got[:2] == [(p + "a", "1"), (p + "b", "2")]
    assert got[2] == (p + "a", "")
    it, cancel = c.watch(p + "b")
    c.put(p + "b", "3")
    e = next(it)
    cancel()
    assert (e.key.decode(), e.value.decode()) == (p + "b", "3")

    q = queue.Queue()
    wid = c.add_watch_callback(p + "c", q.put)
    c.put(p + "c", "4")
    resp = q.get(timeout=10)
    c.cancel_watch(wid)
    assert [(e.key.decode(), e.value.decode()) for e in resp.events] == [(p + "c", "4")]


def test_many_watchers(member, uniq):
    """KEEL_WATCHERS watchers (default 2000; 100000 by hand) over 4 streams,
    on 100 keys; one write per key; every watcher gets exactly its event."""
    total = int(os.environ.get("KEEL_WATCHERS", "2000"))
    keys = [f"{uniq}{i:03d}".encode() for i in range(100)]
    streams = [RawWatch(member.endpoint) for _ in range(4)]
    try:
        t0 = time.monotonic()
        for i in range(total):
            s = streams[i % 4]
            s.create(keys[i % 100], watch_id=i + 1)
        for si, s in enumerate(streams):
            mine = (total - si + 3) // 4
            got = [s.next(timeout=60) for _ in range(mine)]
            assert all(r.created and not r.canceled for r in got)
        t1 = time.monotonic()
        c = member.client()
        revs = {}
        for k in keys:
            revs[k] = put(c, k, b"v")
        seen = {}
        for si, s in enumerate(streams):
            mine = (total - si + 3) // 4
            for _ in range(mine):
                r = s.next(timeout=60)
                assert len(r.events) == 1
                assert r.watch_id not in seen
                seen[r.watch_id] = r.events[0].kv
        t2 = time.monotonic()
        assert len(seen) == total
        for wid, kv in seen.items():
            k = keys[(wid - 1) % 100]
            assert (kv.key, kv.mod_revision) == (k, revs[k])
        print(f"{total} watchers: created in {t1 - t0:.2f} s, 100 writes delivered in {t2 - t1:.2f} s")
    finally:
        for s in streams:
            s.close()


def test_watch_resumes_across_a_leader_kill(make_cluster, uniq):
    """A watch from an old revision, on the leader; the leader is killed under
    load; the client resumes from last seen revision + 1 on another member, as
    etcd's clients do. What it saw must be exactly the store's history."""
    c = make_cluster(3)
    leader = c.leader()
    others = [m for m in c.members if m is not leader]
    p = uniq
    cl = others[0].client()
    first = cur_rev(cl) + 1
    pipelined_puts(others[0], [(f"{p}pre{i:03d}", f"p{i}") for i in range(30)])

    seen: list[tuple] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    resumes: list[str] = []

    def watcher():
        targets = [leader] + others
        ti = 0
        nxt = first
        while not stop.is_set():
            m = targets[ti % len(targets)]
            if not m.running():
                ti += 1
                continue
            w = RawWatch(m.endpoint)
            try:
                w.create(p.encode(), prefix_end(p.encode()), start_revision=nxt)
                while not stop.is_set():
                    try:
                        r = w.next(timeout=0.5)
                    except AssertionError:
                        continue  # nothing yet: check stop and wait again
                    if r.canceled:
                        errors.append(f"canceled by {m.name}: {r}")
                        return
                    with lock:
                        for e in r.events:
                            seen.append(ev(e))
                            nxt = e.kv.mod_revision + 1
            except StreamEnded:
                resumes.append(m.name)
                ti += 1  # the member went away: resume on the next one
            finally:
                w.close()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    w = LoadWriter(others, p + "load", rpc_timeout=1.0).start()
    try:
        wait_for(lambda: w.acked_count() >= 40, 30, "40 writes before the kill")
        wait_for(lambda: len(seen) >= 40, 30, "the watcher to see events from the leader")
        leader.kill()
        n = w.acked_count()
        wait_for(lambda: w.acked_count() >= n + 40, 30, "40 writes after the kill")
    finally:
        acked = w.stop()
    # Everything under the prefix, as the store has it now.
    final = cl.kvstub.Range(etcdrpc.RangeRequest(key=p.encode(), range_end=prefix_end(p.encode())),
                            timeout=5)
    history = sorted((("PUT", kv.key, kv.value, kv.mod_revision) for kv in final.kvs),
                     key=lambda x: x[3])
    last = history[-1][3]
    try:
        wait_for(lambda: errors or (seen and seen[-1][3] >= last), 30,
                 f"the watcher to reach revision {last}")
    finally:
        stop.set()
        t.join(timeout=10)
    assert not errors, errors
    assert resumes[:1] == [leader.name], "the watch was on the leader and had to resume elsewhere"
    for k in acked:
        assert any(h[1] == k.encode() for h in history), f"acknowledged {k} missing from the store"
    # Every key is written once: the store's rows are its whole history.
    assert seen == history, (f"watched {len(seen)} events, the store has {len(history)}; "
                             f"first difference at {next((i for i, (a, b) in enumerate(zip(seen, history)) if a != b), None)}")
