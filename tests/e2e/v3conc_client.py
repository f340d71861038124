"""Drives the v3lock and v3election gRPC services of one endpoint and prints
what it saw as one JSON line (test_concurrency.py compares it). Runs in its
own process: its stubs, generated here by protoc from proto/, would clash
with python3-etcd3's in the test process. Every wait polls a condition
against a deadline."""

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

endpoint, uniq = sys.argv[1], sys.argv[2]
PROTO = Path(__file__).resolve().parents[2] / "proto"
gen = tempfile.mkdtemp(prefix="v3conc-")
subprocess.run(["protoc", "-I", str(PROTO), "--python_out", gen, "etcdserverpb/rpc.proto",
                "mvccpb/kv.proto", "authpb/auth.proto", "v3lockpb/v3lock.proto",
                "v3electionpb/v3election.proto"], check=True)
sys.path.insert(0, gen)
from etcdserverpb import rpc_pb2 as rpc  # noqa: E402
from v3electionpb import v3election_pb2 as el  # noqa: E402
from v3lockpb import v3lock_pb2 as lk  # noqa: E402

ch = grpc.insecure_channel(endpoint)


def unary(path, resp):
    return ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=resp.FromString)


grant = unary("/etcdserverpb.Lease/LeaseGrant", rpc.LeaseGrantResponse)
revoke = unary("/etcdserverpb.Lease/LeaseRevoke", rpc.LeaseRevokeResponse)
rng = unary("/etcdserverpb.KV/Range", rpc.RangeResponse)
lock = unary("/v3lockpb.Lock/Lock", lk.LockResponse)
unlock = unary("/v3lockpb.Lock/Unlock", lk.UnlockResponse)
campaign = unary("/v3electionpb.Election/Campaign", el.CampaignResponse)
proclaim = unary("/v3electionpb.Election/Proclaim", el.ProclaimResponse)
leader = unary("/v3electionpb.Election/Leader", el.LeaderResponse)
resign = unary("/v3electionpb.Election/Resign", el.ResignResponse)
observe = ch.unary_stream("/v3electionpb.Election/Observe",
                          request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=el.LeaderResponse.FromString)


def err(fn, req):
    try:
        fn(req, timeout=10)
        return None
    except grpc.RpcError as e:
        return [e.code().name, e.details()]


def wait_for(cond, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)  # poll interval within the deadline


def count(prefix: bytes) -> int:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    return rng(rpc.RangeRequest(key=prefix, range_end=end, count_only=True), timeout=10).count


def in_thread(fn, req, out):
    def run():
        out["resp"] = fn(req, timeout=60)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


res = {}
l1 = grant(rpc.LeaseGrantRequest(TTL=60), timeout=10).ID
l2 = grant(rpc.LeaseGrantRequest(TTL=60), timeout=10).ID

# Lock: a second holder waits until the first unlocks.
name = (uniq + "lk").encode()
r1 = lock(lk.LockRequest(name=name, lease=l1), timeout=10)
res["lock_key_prefix"] = r1.key == name + b"/" + format(l1, "x").encode()
second = {}
t = in_thread(lock, lk.LockRequest(name=name, lease=l2), second)
wait_for(lambda: count(name + b"/") == 2, "the second lock request to queue")
waited = "resp" not in second
unlock(lk.UnlockRequest(key=r1.key), timeout=10)
t.join(30)
res["second_lock_waited_for_unlock"] = waited and second["resp"].key == name + b"/" + format(l2, "x").encode()
unlock(lk.UnlockRequest(key=second["resp"].key), timeout=10)
res["lock_unknown_lease"] = err(lock, lk.LockRequest(name=name, lease=0x7777))

# Election.
ename = (uniq + "el").encode()
res["leader_none"] = err(leader, el.LeaderRequest(name=ename))
c1 = campaign(el.CampaignRequest(name=ename, lease=l1, value=b"one"), timeout=10)
res["campaign_key_prefix"] = (c1.leader.key == ename + b"/" + format(l1, "x").encode()
                              and c1.leader.lease == l1 and c1.leader.rev > 0 and c1.leader.name == ename)
res["leader_value"] = leader(el.LeaderRequest(name=ename), timeout=10).kv.value.decode()
observed = []
stream = observe(el.LeaderRequest(name=ename), timeout=60)


def watch_leader():
    try:
        for r in stream:
            observed.append(r.kv.value.decode())
    except grpc.RpcError:
        pass


threading.Thread(target=watch_leader, daemon=True).start()
wait_for(lambda: observed == ["one"], "Observe to report the leader")
proclaim(el.ProclaimRequest(leader=c1.leader, value=b"two"), timeout=10)
res["proclaimed"] = leader(el.LeaderRequest(name=ename), timeout=10).kv.value.decode()
proclaim(el.ProclaimRequest(leader=c1.leader, value=b"three"), timeout=10)
c2 = {}
t = in_thread(campaign, el.CampaignRequest(name=ename, lease=l2, value=b"b"), c2)
wait_for(lambda: count(ename + b"/") == 2, "the second candidate to queue")
waited = "resp" not in c2
resign(el.ResignRequest(leader=c1.leader), timeout=10)
t.join(30)
res["second_campaign_waited_for_resign"] = waited and c2["resp"].leader.key == ename + b"/" + format(l2, "x").encode()
wait_for(lambda: "b" in observed, "Observe to report the new leader")
res["observed"] = observed[1:]
stream.cancel()
res["proclaim_stale"] = err(proclaim, el.ProclaimRequest(leader=c1.leader, value=b"x"))
res["resign_missing_leader"] = err(resign, el.ResignRequest())
resign(el.ResignRequest(leader=c2["resp"].leader), timeout=10)
for lease in (l1, l2):  # nothing left to expire in a later test
    revoke(rpc.LeaseRevokeRequest(ID=lease), timeout=10)
print(json.dumps(res, sort_keys=True))
