"""Restarts on the same data directory; refusing a corrupt one without touching it."""

import hashlib
import os
import signal
from pathlib import Path

import pytest

from cluster import decode_kvs, pipelined_puts

MARKER = b"CORRUPTME"


def state_of(m, prefix: str):
    r = m.ctl_ok("get", prefix, "--prefix", "-w", "json").json()
    return int(r["header"]["revision"]), [
        (kv["key"], kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"]) for kv in decode_kvs(r)]


def ids_of(m):
    h = m.status()["header"]
    return int(h["cluster_id"]), int(h["member_id"])


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_restart_keeps_data(make_cluster, uniq, how):
    c = make_cluster(1)
    m = c[0]
    for i in range(20):
        m.ctl_ok("put", f"{uniq}{i % 7}", f"v{i}")
    m.ctl_ok("del", f"{uniq}3")
    before_rev, before = state_of(m, uniq)
    ids = ids_of(m)
    if how == "kill9":
        m.kill()
    else:
        m.proc.send_signal(signal.SIGTERM)
        m.wait_exit(20)
    m.start()
    m.wait_healthy(30)
    assert ids_of(m) == ids
    assert state_of(m, uniq) == (before_rev, before)
    # history survives too, and the revision goes on from where it was
    assert m.ctl_ok("get", f"{uniq}0", "--rev", "2").out == f"{uniq}0\nv0\n"
    m.ctl_ok("put", uniq + "new", "x")
    assert state_of(m, uniq)[0] == before_rev + 1


def test_restart_whole_three_member_cluster(make_cluster, uniq):
    c = make_cluster(3)
    for i, m in enumerate(c.members):
        m.ctl_ok("put", f"{uniq}{i}", f"v{i}")
    before = state_of(c[0], uniq)
    ids = {m.name: ids_of(m) for m in c.members}
    c.stop()  # kill -9 all
    for m in c.members:
        m.start()
    c.wait_ready(30)
    assert {m.name: ids_of(m) for m in c.members} == ids
    for m in c.members:
        assert state_of(m, uniq) == before


def dir_hashes(d: Path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), d) + "/"] = "dir"
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = hashlib.sha256(f.read()).hexdigest()
    return out


def wal_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*.wal") if p.is_file())


def write_markers(m, uniq: str, n: int = 60) -> None:
    pipelined_puts(m, [(f"{uniq}{i}", MARKER.decode() + f"{i:04d}" + "x" * 200) for i in range(n)], window=8)


def flip_in_middle_of_wal(data_dir: Path) -> Path:
    """Flips 8 bytes inside the value of the middle marker write in the WAL."""
    for wal in wal_files(data_dir):
        data = bytearray(wal.read_bytes())
        hits = []
        i = data.find(MARKER)
        while i >= 0:
            hits.append(i)
            i = data.find(MARKER, i + 1)
        if len(hits) >= 10:
            at = hits[len(hits) // 2] + len(MARKER) + 20  # inside the x's
            for j in range(at, at + 8):
                data[j] ^= 0xFF
            wal.write_bytes(bytes(data))
            return wal
    raise AssertionError(f"no WAL file under {data_dir} holds the marker writes: {wal_files(data_dir)}")


def untouched_part(target: str, hashes: dict) -> dict:
    """What must stay byte for byte the same after a refused start.

    keel: the whole data directory.  etcd opens (and rewrites) its bbolt file
    member/snap/db before it reads the WAL, so for etcd only the WAL counts."""
    if target == "keel":
        return hashes
    return {k: v for k, v in hashes.items() if k.startswith("member/wal")}


def expect_refusal(m, before: dict, file_hint: str | None) -> str:
    m.start()
    try:
        rc = m.wait_exit(30)
    except Exception:
        m.kill()
        raise AssertionError(f"{m.cluster.target} kept running on a corrupt data dir:\n{m.log_since_last_start()[-3000:]}")
    log = m.log_since_last_start()
    assert rc != 0, f"exit code {rc}\n{log[-3000:]}"
    body = log.split("\n", 2)[-1].strip()  # after our "===== start" line
    assert body, "no message at all"
    if file_hint is not None:
        assert file_hint in log, f"the message does not name {file_hint}:\n{log[-3000:]}"
    target = m.cluster.target
    before = untouched_part(target, before)
    after = untouched_part(target, dir_hashes(m.data_dir))
    assert after == before, "the data directory was modified: " + str(
        {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)})
    return log


def test_corrupt_wal_is_refused(make_cluster, uniq, target):
    c = make_cluster(1)
    m = c[0]
    write_markers(m, uniq)
    m.kill()
    wal = flip_in_middle_of_wal(m.data_dir)
    before = dir_hashes(m.data_dir)
    # keel must name the file; etcd's message differs (it says "crc mismatch").
    expect_refusal(m, before, wal.name if target == "keel" else None)
    # still refused on a second try, and still untouched
    expect_refusal(m, before, wal.name if target == "keel" else None)


def test_garbage_wal_segment_is_refused(make_cluster, uniq, target):
    """The head of the WAL overwritten with garbage (its size unchanged)."""
    c = make_cluster(1)
    m = c[0]
    write_markers(m, uniq, 20)
    m.kill()
    (wal,) = wal_files(m.data_dir)[:1]
    data = bytearray(wal.read_bytes())
    garbage = hashlib.sha256(b"garbage").digest() * 128  # 4 KiB, deterministic
    data[: len(garbage)] = garbage
    wal.write_bytes(bytes(data))
    before = dir_hashes(m.data_dir)
    expect_refusal(m, before, wal.name if target == "keel" else None)
