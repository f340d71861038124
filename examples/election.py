#!/usr/bin/python3
"""Leader election among service instances, with a lease.

Every instance of a service runs this loop. To become leader, an instance
creates the election key with a transaction that only succeeds if the key
does not exist yet (its create revision is 0), and attaches the key to a
lease: a time-to-live the instance keeps alive while it runs. The one whose
transaction succeeds leads; the others wait until the key disappears, then
try again. When the leader resigns it revokes its lease and the key goes at
once; when it crashes or loses the network its lease is no longer kept
alive and expires after the TTL, and the key goes with it. Either way
exactly one instance leads at a time.

Run it against keel or etcd (Debian: apt-get install python3-etcd3), in as
many terminals as you like:

    ./examples/election.py --endpoint 127.0.0.1:2379 --id web-1
    ./examples/election.py --endpoint 127.0.0.1:2379 --id web-2

Each prints "<id>: elected leader" when it takes over; stop the leader
(Ctrl-C resigns at once; kill -9 leaves its lease to expire) and watch
another take over. --lead-for N makes a leader resign after N seconds and
exit, which shows a hand-over without killing anything.
"""

import argparse
import signal
import sys
import time

import etcd3


def campaign(client, key: str, me: str, ttl: int, stop) -> "etcd3.Lease | None":
    """Blocks until this instance leads; returns its lease (None if stopped)."""
    lease = client.lease(ttl)
    while not stop():
        won, responses = client.transaction(
            # The key does not exist: nobody leads.
            compare=[client.transactions.create(key) == 0],
            success=[client.transactions.put(key, me, lease=lease)],
            failure=[client.transactions.get(key)],
        )
        if won:
            return lease
        # Someone leads. Keep our lease alive while we wait, and look again
        # soon (a watch on the key would wake us at once; polling keeps the
        # example short).
        lease.refresh()
        time.sleep(0.1)  # example's poll interval, not a test wait
    lease.revoke()
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", default="127.0.0.1:2379")
    p.add_argument("--election", default="/election/my-service")
    p.add_argument("--id", required=True, help="this instance's name")
    p.add_argument("--ttl", type=int, default=5, help="lease TTL in seconds")
    p.add_argument("--lead-for", type=float, default=0,
                   help="resign and exit after leading this long (0: lead until stopped)")
    args = p.parse_args()
    host, port = args.endpoint.rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=10)

    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))

    print(f"{args.id}: campaigning for {args.election}", flush=True)
    lease = campaign(client, args.election, args.id, args.ttl, lambda: bool(stopping))
    if lease is None:
        return 0
    print(f"{args.id}: elected leader at {time.time():.3f} (lease {lease.id:x})", flush=True)
    started = time.monotonic()
    # Lead: do the service's work here, and keep the lease alive well
    # within its TTL.
    while not stopping and (args.lead_for == 0 or time.monotonic() - started < args.lead_for):
        lease.refresh()
        value, _ = client.get(args.election)
        if value is None or value.decode() != args.id:
            # Our lease expired (we were paused or cut off): step down.
            print(f"{args.id}: lost leadership at {time.time():.3f}", flush=True)
            return 1
        time.sleep(min(0.2, args.ttl / 3))  # example's work loop
    # Resign: print first, so that the time printed is before the hand-over.
    print(f"{args.id}: resigning at {time.time():.3f}", flush=True)
    lease.revoke()
    return 0


if __name__ == "__main__":
    sys.exit(main())
