"""Real server processes on loopback for the end-to-end tests.

A Cluster is 1 or 3 members of one implementation ("etcd" or "keel"), each a
child process started with etcd's flags, listening on free 127.0.0.1 ports,
with its data directory and log file under a pytest tmp_path.  Everything is
polled with a deadline; nothing waits with a bare sleep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, TypeVar

REPO = Path(__file__).resolve().parents[2]
ETCD_BIN = os.environ.get("KEEL_E2E_ETCD_BIN", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("KEEL_E2E_ETCDCTL_BIN", "/usr/bin/etcdctl")


def keel_bin() -> str:
    return os.environ.get("KEEL_BIN", str(REPO / "build" / "src" / "cmd" / "keel"))


def server_bin(target: str) -> str:
    if target == "etcd":
        return ETCD_BIN
    if target == "keel":
        return keel_bin()
    raise ValueError(f"unknown target {target!r}")


# Fast timings for the suite (the defaults are exercised by one test).
HEARTBEAT_MS = 50
ELECTION_MS = 500

T = TypeVar("T")


class Timeout(AssertionError):
    pass


class ProcessExited(AssertionError):
    """A server process died while we waited on it: waiting longer cannot help."""


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls cond() until it returns a truthy value or the deadline passes.

    Exceptions raised by cond count as "not yet"; the last one is reported."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    last_val = None
    while True:
        try:
            val = cond()
            if val:
                return val
            last_val = val
        except ProcessExited:
            raise
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f"last error: {last_exc!r}" if last_exc else f"last value: {last_val!r}"
            raise Timeout(f"timed out after {timeout}s waiting for {what}; {detail}")
        time.sleep(interval)  # poll interval, under the deadline above


_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A loopback port the kernel says is free, never handed out twice by this process."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RuntimeError("no free port")


# ---------------------------------------------------------------------------
# etcdctl


class CtlResult:
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess):
        self.args = args
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def json(self):
        return json.loads(self.out)

    def error_line(self) -> str:
        """The 'Error: ...' line etcdctl prints for a failed command ('' if none)."""
        for line in self.err.splitlines():
            if line.startswith("Error:"):
                return line[len("Error:"):].strip()
        return ""

    def __repr__(self) -> str:
        return (f"etcdctl {' '.join(self.args)} -> rc={self.rc}\n"
                f"--- stdout ---\n{self.out}--- stderr ---\n{self.err}")


def etcdctl(endpoints: Iterable[str] | str, *args: str, input: Optional[str] = None,
            timeout: float = 20, command_timeout: str = "5s") -> CtlResult:
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    argv = [ETCDCTL_BIN, "--endpoints=" + ",".join(endpoints), "--dial-timeout=2s",
            "--command-timeout=" + command_timeout, *args]
    env = dict(os.environ, ETCDCTL_API="3")
    # etcdctl reads ETCDCTL_* variables; never let a stray one change a test.
    for k in list(env):
        if k.startswith("ETCDCTL_") and k != "ETCDCTL_API":
            del env[k]
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    return CtlResult(list(args), proc)


def ctl_ok(endpoints, *args: str, **kw) -> CtlResult:
    r = etcdctl(endpoints, *args, **kw)
    assert r.ok, repr(r)
    return r


# ---------------------------------------------------------------------------
# members and clusters


# A server is SIGKILLed when the test process dies (even by SIGKILL, as on a
# CTest timeout), so that none outlives the suite: util-linux's setpriv sets
# the parent-death signal and execs it. (It was a preexec_fn calling prctl
# through ctypes: code run between fork and exec in a process with grpcio's
# threads, which once deadlocked the child, and with it Popen, for good.)
DIE_WITH_PARENT = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"]


class Member:
    def __init__(self, cluster: "Cluster", name: str, base: Path):
        self.cluster = cluster
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = base / f"{name}.data"
        self.log_path = base / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self._log_file = None
        # A member added to a running cluster joins it ("existing").
        self.cluster_state = "new"
        self.initial_cluster: Optional[str] = None  # default: the cluster's
        self.extra_flags: dict = {}

    @property
    def client_url(self) -> str:
        return f"{self.cluster.client_scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.cluster.peer_scheme}://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def argv(self) -> list[str]:
        c = self.cluster
        argv = [
            server_bin(c.target),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or c.initial_cluster(),
            "--initial-cluster-state", self.cluster_state,
            "--initial-cluster-token", c.token,
            "--log-level", c.log_level,
        ]
        if c.heartbeat_ms is not None:
            argv += ["--heartbeat-interval", str(c.heartbeat_ms)]
        if c.election_ms is not None:
            argv += ["--election-timeout", str(c.election_ms)]
        flags = dict(c.extra_flags)
        if c.member_flags is not None:
            flags.update(c.member_flags(self))
        flags.update(self.extra_flags)
        for k, v in flags.items():
            argv += [f"--{k}", str(v)] if v is not True and v is not None else [f"--{k}"]
        return argv

    def start(self) -> None:
        assert not self.running(), f"{self.name} is already running"
        self.starts += 1
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
        self._log_file.flush()
        # Both servers read ETCD_* variables as flags: only ours count.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        self.proc = subprocess.Popen(
            DIE_WITH_PARENT + self.argv(), stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, then reap."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wait_exit(self, timeout: float) -> int:
        """Waits for a process that is expected to exit by itself; returns its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None and self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_last_start(self) -> str:
        text = self.log()
        i = text.rfind("\n===== start #")
        return text[i:] if i >= 0 else text

    def ctl(self, *args: str, **kw) -> CtlResult:
        return etcdctl(self.endpoint, *self.cluster.ctl_args, *args, **kw)

    def ctl_ok(self, *args: str, **kw) -> CtlResult:
        return ctl_ok(self.endpoint, *self.cluster.ctl_args, *args, **kw)

    def status(self) -> dict:
        """`endpoint status -w json` of this member: the Status object."""
        r = self.ctl_ok("endpoint", "status", "-w", "json", command_timeout="2s")
        return r.json()[0]["Status"]

    def check_alive(self) -> None:
        if not self.running():
            rc = self.proc.returncode if self.proc else None
            tail = "\n".join(self.log_since_last_start().splitlines()[-20:])
            raise ProcessExited(f"{self.cluster.target} {self.name} exited with {rc} "
                                f"({'signal ' + str(-rc) if rc is not None and rc < 0 else 'status'}); "
                                f"its log ends:\n{tail}")

    def healthy(self) -> bool:
        self.check_alive()
        r = self.ctl("endpoint", "health", "-w", "json", command_timeout="2s", timeout=10)
        if not r.ok:
            return False
        return bool(r.json()[0].get("health"))

    def client(self, timeout: float = 5):
        import etcd3  # Debian's python3-etcd3
        return etcd3.client(host="127.0.0.1", port=self.client_port, timeout=timeout,
                            **self.cluster.client_kw)

    def wait_healthy(self, timeout: float = 20) -> None:
        wait_for(self.healthy, timeout, f"{self.name} ({self.endpoint}) to be healthy")


class Cluster:
    def __init__(self, target: str, base: Path, size: int = 1, *,
                 heartbeat_ms: Optional[int] = HEARTBEAT_MS,
                 election_ms: Optional[int] = ELECTION_MS,
                 log_level: Optional[str] = None,
                 extra_flags: Optional[dict] = None,
                 client_scheme: str = "http", peer_scheme: str = "http",
                 member_flags: Optional[Callable[["Member"], dict]] = None,
                 ctl_args: Iterable[str] = (), client_kw: Optional[dict] = None):
        """member_flags(member) adds per-member flags (e.g. its certificate);
        a flag whose value is True is passed alone. ctl_args go to every
        etcdctl call of Member.ctl (e.g. --cacert); client_kw to etcd3.client."""
        self.target = target
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.log_level = log_level or "info"
        self.extra_flags = dict(extra_flags or {})
        self.client_scheme = client_scheme
        self.peer_scheme = peer_scheme
        self.member_flags = member_flags
        self.ctl_args = list(ctl_args)
        self.client_kw = dict(client_kw or {})
        self.token = f"e2e-{os.getpid()}-{id(self):x}"
        self.members = [Member(self, f"m{i}", self.base) for i in range(size)]
        _live_clusters.append(self)

    # -- topology

    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def running_members(self) -> list[Member]:
        return [m for m in self.members if m.running()]

    def __getitem__(self, i: int) -> Member:
        return self.members[i]

    def __len__(self) -> int:
        return len(self.members)

    @property
    def election_s(self) -> float:
        return (self.election_ms or 1000) / 1000.0

    def new_member(self, name: str) -> Member:
        """A member to add to the running cluster (`member add`, then start()):
        it joins with --initial-cluster-state existing."""
        m = Member(self, name, self.base)
        m.cluster_state = "existing"
        self.members.append(m)
        return m

    # -- lifecycle

    def start(self, timeout: float = 30) -> "Cluster":
        for m in self.members:
            m.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> int:
        """Every running member healthy and agreeing on one leader; returns the leader's id."""
        deadline = time.monotonic() + timeout
        for m in self.running_members():
            m.wait_healthy(max(1.0, deadline - time.monotonic()))
        return self.wait_leader(max(1.0, deadline - time.monotonic()))

    def leader_ids(self, members: Optional[list[Member]] = None) -> set[int]:
        ids = set()
        for m in members or self.running_members():
            ids.add(int(m.status()["leader"]))
        return ids

    def wait_leader(self, timeout: float, exclude: Optional[int] = None) -> int:
        def one_leader():
            for m in self.members:
                if m.starts and m.proc is not None and m.proc.returncode is None:
                    m.check_alive()
            ids = self.leader_ids()
            if len(ids) == 1:
                (lid,) = ids
                if lid != 0 and lid != exclude and lid in self.member_ids_running():
                    return lid
            return None
        return wait_for(one_leader, timeout, "one leader agreed on by every running member")

    def member_ids_running(self) -> set[int]:
        return {int(m.status()["header"]["member_id"]) for m in self.running_members()}

    def member_by_id(self, member_id: int) -> Member:
        for m in self.running_members():
            if int(m.status()["header"]["member_id"]) == member_id:
                return m
        raise KeyError(member_id)

    def leader(self, timeout: float = 10) -> Member:
        return self.member_by_id(self.wait_leader(timeout))

    def stop(self) -> None:
        for m in self.members:
            m.kill()

    def logs(self, tail: int = 120) -> str:
        out = []
        for m in self.members:
            lines = m.log().splitlines()
            out.append(f"----- {self.target} {m.name} ({m.endpoint}) log, last {tail} lines "
                       f"of {len(lines)} ({m.log_path}) -----")
            out.extend(lines[-tail:])
        return "\n".join(out)


_live_clusters: list[Cluster] = []


def live_clusters() -> list[Cluster]:
    return list(_live_clusters)


def forget_cluster(c: Cluster) -> None:
    if c in _live_clusters:
        _live_clusters.remove(c)


# ---------------------------------------------------------------------------
# output helpers


def b64(s: str) -> str:
    import base64
    return base64.b64encode(s.encode()).decode()


def unb64(s: str) -> str:
    import base64
    return base64.b64decode(s).decode()


def decode_kvs(resp: dict) -> list[dict]:
    """The kvs of a `get -w json` response with key and value decoded to str."""
    out = []
    for kv in resp.get("kvs", []):
        kv = dict(kv)
        kv["key"] = unb64(kv["key"])
        kv["value"] = unb64(kv.get("value", ""))
        out.append(kv)
    return out


def simple_pairs(out: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of a `get` in the simple format."""
    lines = out.splitlines()
    assert len(lines) % 2 == 0, f"odd number of lines in {out!r}"
    return [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]


# ---------------------------------------------------------------------------
# background load


class LoadWriter:
    """A thread that puts <prefix><n> = "v<n>" through some members, round robin,
    moving to the next member on an error, and records the writes acknowledged.

    Writes that failed may or may not have been applied: only acknowledged ones
    must survive.  Bounded by max_writes and by the caller's stop()."""

    def __init__(self, members: list[Member], prefix: str, max_writes: int = 100000,
                 rpc_timeout: float = 2.0):
        self.members = list(members)
        self.prefix = prefix
        self.max_writes = max_writes
        self.rpc_timeout = rpc_timeout
        self.acked: dict[str, str] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{prefix}", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "LoadWriter":
        self._thread.start()
        return self

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self) -> None:
        clients = [m.client(timeout=self.rpc_timeout) for m in self.members]
        try:
            i = 0
            n = 0
            while not self._stop.is_set() and n < self.max_writes:
                k, v = f"{self.prefix}{n:06d}", f"v{n}"
                try:
                    clients[i % len(clients)].put(k, v)
                    with self._lock:
                        self.acked[k] = v
                except Exception as e:  # noqa: BLE001 - any failure: not acknowledged
                    self.errors.append(f"{k} via {self.members[i % len(clients)].name}: {e!r}"[:300])
                    i += 1
                    # a failed write is not retried under the same key (it may have been applied)
                    self._stop.wait(0.01)
                n += 1
        finally:
            for c in clients:
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass

    def stop(self) -> dict[str, str]:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "load writer did not stop"
        with self._lock:
            return dict(self.acked)


def pipelined_puts(member: Member, items: list[tuple[str, str]], window: int = 64, timeout: float = 30) -> None:
    """Puts many keys quickly through one member, `window` requests in flight (gRPC futures)."""
    from etcd3 import etcdrpc
    c = member.client(timeout=timeout)
    try:
        pending = []
        for k, v in items:
            pending.append(c.kvstub.Put.future(etcdrpc.PutRequest(key=k.encode(), value=v.encode()),
                                               timeout=timeout))
            if len(pending) >= window:
                for f in pending:
                    f.result()
                pending = []
        for f in pending:
            f.result()
    finally:
        c.close()
