"""etcd's concurrency recipes on keel: `etcdctl lock` and `etcdctl elect`
(clientv3/concurrency over KV, Lease and Watch), and the v3lock / v3election
gRPC services (v3conc_client.py, in its own process: its generated stubs
would clash with python3-etcd3's in this one)."""

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from cluster import ETCDCTL_BIN, wait_for

HERE = Path(__file__).resolve().parent
ENV = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}


def ctl_popen(endpoint, *args):
    return subprocess.Popen([ETCDCTL_BIN, f"--endpoints={endpoint}", "--dial-timeout=2s", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            start_new_session=True)


class Lines:
    """The output lines of a process, read in the background."""

    def __init__(self, proc):
        self.proc = proc
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


def test_lock_mutual_exclusion_fenced_by_revision(member, uniq):
    """Competing `etcdctl lock` processes: each holder checks, in the same
    txn, that nobody else is inside and that its token (its lock key's create
    revision) is above the last one used."""
    prefix = uniq + "res/"
    member.ctl_ok("put", prefix + "owner", "")
    member.ctl_ok("put", prefix + "fence", "0" * 20)
    workers, rounds = 4, 3
    # `timeout`: a holder that never gets the lock fails the test, not hangs it.
    loop = (f"for i in $(seq {rounds}); do timeout 60 {ETCDCTL_BIN} --endpoints={member.endpoint} "
            f"lock {uniq}lock /usr/bin/python3 {HERE / 'lock_holder.py'} {member.endpoint} {prefix}"
            f" || exit 1; done")
    procs = [subprocess.Popen(["/bin/sh", "-c", loop], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=ENV) for _ in range(workers)]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        outs.append(out)
        assert p.returncode == 0, out
    held = [line for out in outs for line in out.splitlines() if line.startswith("held ")]
    assert len(held) == workers * rounds, outs
    log = member.ctl_ok("get", prefix + "log/", "--prefix", "-w", "json").json()["kvs"]
    assert len(log) == workers * rounds
    # In the order the section was entered (mod revision), tokens increase.
    tokens = [int(Path(__import__("base64").b64decode(kv["key"]).decode()).name)
              for kv in sorted(log, key=lambda kv: int(kv["mod_revision"]))]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens
    assert member.ctl_ok("get", uniq + "lock", "--prefix").out == "", "a lock key was left behind"


def test_elect_campaign_observe_resign(member, uniq):
    name = uniq + "election"
    obs = Lines(ctl_popen(member.endpoint, "elect", "-l", name))
    a = Lines(ctl_popen(member.endpoint, "elect", name, "alpha"))
    b = None
    try:
        wait_for(lambda: len(a.lines) >= 2, 20, "alpha to be elected")
        assert a.lines[0].startswith(name + "/") and a.lines[1] == "alpha", a.lines
        b = Lines(ctl_popen(member.endpoint, "elect", name, "beta"))
        wait_for(lambda: obs.lines[:2] == a.lines[:2], 20, "the observer to see alpha")
        # beta queues behind alpha and waits.
        wait_for(lambda: len(member.ctl_ok("get", name, "--prefix", "--keys-only").out.split()) == 2,
                 20, "beta to queue")
        assert b.lines == []
        # alpha resigns on SIGINT; beta becomes leader and the observer sees it.
        a.stop(signal.SIGINT)
        wait_for(lambda: len(b.lines) >= 2, 20, "beta to be elected after alpha resigned")
        assert b.lines[0].startswith(name + "/") and b.lines[1] == "beta", b.lines
        wait_for(lambda: obs.lines[2:4] == b.lines[:2], 20, f"the observer to see beta: {obs.lines}")
        b.stop(signal.SIGINT)
    finally:
        for p in (obs, a, b):
            if p is not None:
                p.stop()


def test_lock_and_election_services(member, uniq):
    """The v3lock and v3election gRPC services, driven by v3conc_client.py."""
    r = subprocess.run(["/usr/bin/python3", str(HERE / "v3conc_client.py"), member.endpoint, uniq],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {
        "lock_key_prefix": True,
        "second_lock_waited_for_unlock": True,
        # etcd's recipes pass the KV error on as a plain (UNKNOWN) error
        "lock_unknown_lease": ["UNKNOWN", "etcdserver: requested lease not found"],
        "leader_none": ["UNKNOWN", "election: no leader"],
        "campaign_key_prefix": True,
        "leader_value": "one",
        "proclaimed": "two",
        "observed": ["two", "three", "b"],  # after "one"
        "proclaim_stale": ["UNKNOWN", "election: not leader"],
        "second_campaign_waited_for_resign": True,
        "resign_missing_leader": ["UNKNOWN", '"leader" field must be provided'],
    }, got
