"""Observability as operators use it: /metrics scraped and parsed by a real
Prometheus text parser (and promtool), values that move as the cluster
works, /health that flips when quorum is lost, and JSON logs with the
leader event."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families  # python3-prometheus-client

import cluster as cl

# Names etcd itself exposes that promtool's linter dislikes (a gauge named
# *_total, a counter without _total): kept as they are, for dashboards.
ETCD_LEGACY_NAMES = {
    "etcd_server_proposals_applied_total", "etcd_server_proposals_committed_total",
    "etcd_server_snapshot_apply_in_progress_total", "etcd_server_health_failures",
    "etcd_server_health_success", "etcd_server_learner_promote_successes",
    "etcd_disk_wal_write_bytes_total", "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_pending_events_total", "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_lease_ttl_total", "etcd_grpc_proxy_cache_hits_total",
    "etcd_grpc_proxy_cache_keys_total", "etcd_grpc_proxy_cache_misses_total",
    "etcd_grpc_proxy_watchers_coalescing_total",
    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
}


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Scrape:
    """One /metrics scrape, parsed by prometheus_client's text parser."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples:
            # The parser names a counter's sample <family>_total even when the
            # exposition had no suffix (etcd_server_health_success).
            key = (name + "_total", key[1])
        if key not in self.samples:
            raise KeyError(f"no sample {name}{labels} in the scrape")
        return self.samples[key]

    def labelled(self, name: str) -> list[tuple[dict, float]]:
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]


def scrape(url: str) -> Scrape:
    status, text = http_get(url + "/metrics")
    assert status == 200, f"GET {url}/metrics: {status} {text[:200]}"
    return Scrape(text)


def check_histogram(s: Scrape, name: str, **labels) -> float:
    """Buckets are cumulative, end at +Inf, and +Inf equals _count. Returns _count."""
    buckets = sorted(((float(lab["le"]), v) for lab, v in s.labelled(name + "_bucket")
                      if all(lab.get(k) == v2 for k, v2 in labels.items())))
    assert buckets, f"{name}: no buckets"
    assert buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name}: buckets not cumulative: {buckets}"
    count = s.value(name + "_count", **labels)
    assert counts[-1] == count
    return count


def promtool_problems(text: str) -> list[str]:
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode in (0, 3), f"promtool could not parse the exposition: {lines[:5]}"
    return [ln for ln in lines if ln.split(" ")[0] not in ETCD_LEGACY_NAMES]


def test_metrics_move_and_health_flips_without_quorum(make_cluster, uniq):
    c = make_cluster(3)
    urls = [m.client_url for m in c.members]
    leader = c.leader()
    before = {u: scrape(u) for u in urls}
    for u, s in before.items():
        assert s.value("etcd_server_has_leader") == 1, u
        assert s.value("etcd_server_leader_changes_seen_total") >= 1, u
        assert promtool_problems(s.text) == [], u
    assert sum(s.value("etcd_server_is_leader") for s in before.values()) == 1

    n = 20
    for i in range(n):
        leader.ctl_ok("put", f"{uniq}k{i}", "v" * 100)

    def moved():
        after = scrape(leader.client_url)
        b = before[leader.client_url]
        return after if (after.value("etcd_server_proposals_applied_total")
                         >= b.value("etcd_server_proposals_applied_total") + n) else None

    after = cl.wait_for(moved, 10, "the applied index gauge to move by the puts")
    b = before[leader.client_url]
    assert (after.value("etcd_server_proposals_committed_total")
            >= b.value("etcd_server_proposals_committed_total") + n)
    assert after.value("etcd_server_proposals_pending") >= 0
    assert check_histogram(after, "etcd_disk_wal_fsync_duration_seconds") > \
        check_histogram(b, "etcd_disk_wal_fsync_duration_seconds")
    assert check_histogram(after, "etcd_disk_backend_commit_duration_seconds") > \
        check_histogram(b, "etcd_disk_backend_commit_duration_seconds")
    put_ok = dict(grpc_type="unary", grpc_service="etcdserverpb.KV", grpc_method="Put")
    assert (after.value("grpc_server_handled_total", grpc_code="OK", **put_ok)
            - b.value("grpc_server_handled_total", grpc_code="OK", **put_ok)) == n
    assert (after.value("grpc_server_started_total", **put_ok)
            - b.value("grpc_server_started_total", **put_ok)) == n
    assert after.value("etcd_mvcc_db_total_size_in_bytes") > 0
    assert after.value("etcd_debugging_mvcc_keys_total") >= n
    assert after.value("process_resident_memory_bytes") > 0
    assert after.value("process_open_fds") > 0

    # Peer round-trip times: a real histogram per peer ("To" label).
    def rtt_seen():
        s = scrape(leader.client_url)
        peers = {lab["To"] for lab, v in s.labelled("etcd_network_peer_round_trip_time_seconds_count")
                 if v > 0}
        return s if len(peers) == 2 else None

    s = cl.wait_for(rtt_seen, 30, "round-trip times to both peers")
    for lab, _ in s.labelled("etcd_network_peer_round_trip_time_seconds_count"):
        check_histogram(s, "etcd_network_peer_round_trip_time_seconds", To=lab["To"])

    # Quorum lost: /health and etcd_server_has_leader flip on the survivor.
    survivor = c[0]
    status, body = http_get(survivor.client_url + "/health")
    assert status == 200 and json.loads(body)["health"] == "true", body
    c[1].kill()
    c[2].kill()
    cl.wait_for(lambda: scrape(survivor.client_url).value("etcd_server_has_leader") == 0, 20,
                "etcd_server_has_leader to drop to 0 without quorum")
    status, body = http_get(survivor.client_url + "/health", timeout=15)
    assert status == 503 and json.loads(body)["health"] == "false", (status, body)
    s = scrape(survivor.client_url)
    assert s.value("etcd_server_health_failures") >= 1
    assert s.value("etcd_server_health_success") >= 1


def test_listen_metrics_urls_serves_metrics(make_cluster):
    port = cl.free_port()
    c = make_cluster(1, extra_flags={"listen-metrics-urls": f"http://127.0.0.1:{port}",
                                     "metrics": "extensive"})
    c[0].ctl_ok("put", "/metrics-test/k", "v")
    s = scrape(f"http://127.0.0.1:{port}")
    assert s.value("etcd_server_has_leader") == 1
    assert s.families["etcd_disk_wal_fsync_duration_seconds"].type == "histogram"
    # --metrics=extensive adds the per-method latency histogram.
    put = dict(grpc_type="unary", grpc_service="etcdserverpb.KV", grpc_method="Put")
    assert check_histogram(s, "grpc_server_handling_seconds", **put) >= 1
    status, body = http_get(f"http://127.0.0.1:{port}/health")
    assert status == 200 and json.loads(body)["health"] == "true", body
    assert c[0].running()


def test_json_logs_parse_and_name_the_leader(make_cluster, target):
    flags = {"logger": "zap"}
    if target == "keel":
        flags["log-format"] = "json"  # etcd 3.4's zap logger writes JSON already
    c = make_cluster(1, extra_flags=flags)
    m = c[0]
    member_id = int(m.status()["header"]["member_id"])

    def server_lines() -> list[str]:
        # The suite writes a "===== start" banner before each start; the
        # server may be writing its last line as we read (complete lines only).
        text = m.log_since_last_start()
        text = text[:text.rfind("\n") + 1]
        return [ln for ln in text.splitlines()
                if ln.strip() and not ln.startswith("===== start")]

    def leader_line():
        return next((ln for ln in server_lines() if "elected leader" in ln), None)

    cl.wait_for(leader_line, 10, "the leader election in the log")
    records = []
    for ln in server_lines():
        rec = json.loads(ln)  # every line is one JSON object
        assert {"level", "ts", "msg"} <= rec.keys(), rec
        assert rec["level"] in ("debug", "info", "warn", "error", "dpanic", "panic", "fatal")
        records.append(rec)
    elected = [r for r in records if "elected leader" in r["msg"]]
    assert elected, [r["msg"] for r in records]
    assert f"{member_id:x} elected leader {member_id:x} at term" in elected[0]["msg"]
    # A one-member cluster skips most of its first election timeout, and says so.
    ff = [r for r in records if r["msg"] == "started as single-node; fast-forwarding election ticks"]
    assert len(ff) == 1, [r["msg"] for r in records]
    assert ff[0]["local-member-id"] == f"{member_id:x}"
    ticks = c.election_ms // c.heartbeat_ms

    def go_ms(ms):
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
    assert (ff[0]["forward-ticks"], ff[0]["election-ticks"]) == (ticks - 1, ticks), ff[0]
    assert ff[0]["forward-duration"] == go_ms((ticks - 1) * c.heartbeat_ms), ff[0]
    assert ff[0]["election-timeout"] == go_ms(c.election_ms), ff[0]
