"""Smoke test of keel-bench: about a second of each KV workload against one
keel member on loopback. It checks that operations complete, that none fail
and that the JSON report is well formed; it asserts nothing about speed.

Usage: smoke_test.py KEEL_BENCH KEEL
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # poll interval, under the deadline above


def main() -> int:
    bench, keel = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="keel-bench-smoke-")
    client, peer = free_port(), free_port()
    log = open(os.path.join(tmp, "keel.log"), "w")
    proc = subprocess.Popen(
        [keel, "--name", "m1", "--data-dir", os.path.join(tmp, "m1"),
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"m1=http://127.0.0.1:{peer}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "is ready" in open(log.name).read() or proc.poll() is not None,
                 30, "keel to start")
        assert proc.poll() is None, open(log.name).read()
        runs = [
            ["put", "--sequential", "--key-space", "1000"],
            ["range"],
            ["range", "--consistency", "s"],
            ["txn-put"],
            # gRPC's own client, kept for comparison with the default one.
            ["range", "--transport", "grpc"],
            ["put", "--transport", "grpc"],
        ]
        for args in runs:
            cmd = [bench, *args, "--endpoints", f"127.0.0.1:{client}",
                   "--conns", "2", "--clients", "8", "--duration", "0.3",
                   "--json", "--no-progress"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, f"{cmd}: exit {out.returncode}\n{out.stderr}"
            report = json.loads(out.stdout)
            print(" ".join(args), "->", out.stdout.strip())
            assert report["ops"] > 0, report
            assert report["errors"] == 0, report
            lat = report["latency_ms"]
            assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], report
        # A request the server refuses is counted as that error, with the
        # status and message from the server, by either client.
        for transport in ("h2", "grpc"):
            cmd = [bench, "put", "--transport", transport, "--val-size", "2000000",
                   "--endpoints", f"127.0.0.1:{client}", "--conns", "2",
                   "--clients", "3", "--total", "6", "--json", "--no-progress"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, f"{cmd}: exit {out.returncode}\n{out.stderr}"
            report = json.loads(out.stdout)
            print(transport, "put of 2 MB ->", out.stdout.strip())
            assert report["ops"] == 0, report
            assert report["error_kinds"] == {
                "code 3: etcdserver: request is too large": 6}, report
        print("keel-bench smoke: ok")
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
