"""Run by `etcdctl lock` while it holds the lock: enters the protected section
fenced by the lock key's create revision (the lock's fencing token), as a
resource that only accepts increasing tokens would, and leaves it. Exits 1 if
another holder is inside, or if a later token was already used."""

import sys
import os

import etcd3

endpoint, prefix = sys.argv[1], sys.argv[2]
host, port = endpoint.rsplit(":", 1)
c = etcd3.client(host=host, port=int(port), timeout=10)
key = os.environ["ETCD_LOCK_KEY"]
_, meta = c.get(key)
if meta is None:
    print(f"lock key {key} is gone while held", flush=True)
    sys.exit(1)
token = f"{meta.create_revision:020d}"
owner, fence = prefix + "owner", prefix + "fence"
ok, _ = c.transaction(
    compare=[c.transactions.value(owner) == "", c.transactions.value(fence) < token],
    success=[c.transactions.put(owner, key), c.transactions.put(fence, token),
             c.transactions.put(prefix + "log/" + token, key)],
    failure=[])
if not ok:
    print(f"{key} token {token}: section occupied ({c.get(owner)[0]!r}) or fence ahead "
          f"({c.get(fence)[0]!r})", flush=True)
    sys.exit(1)
ok, _ = c.transaction(compare=[c.transactions.value(owner) == key],
                      success=[c.transactions.put(owner, "")], failure=[])
if not ok:
    print(f"{key}: another holder entered the section meanwhile", flush=True)
    sys.exit(1)
print(f"held {key} token {token}", flush=True)
