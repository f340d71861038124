#!/usr/bin/python3
"""Stock that never oversells, however many buyers race for it.

Each buyer reads the stock count, then asks the cluster to decrement it in a
transaction that first compares: "if the count's key was last modified at the
revision I read, write count-1 and record my order; otherwise do nothing".
Two buyers who read the same count cannot both succeed: the first write
changes the key's mod revision, so the second buyer's compare fails, and it
reads again and retries. No locks, no lost updates, and a sold-out item is
never sold.

Run it against keel or etcd (Debian: apt-get install python3-etcd3):

    ./examples/stock.py --endpoint 127.0.0.1:2379 --stock 10 --buyers 25

It prints each sale and checks at the end that exactly min(stock, buyers)
orders exist and the count is what is left.
"""

import argparse
import sys
import threading

import etcd3


def buy(client, item: str, buyer: str) -> bool:
    """Takes one unit of item for buyer. False when it is sold out."""
    count_key = f"/shop/stock/{item}"
    while True:
        value, meta = client.get(count_key)
        if value is None:
            raise KeyError(f"no stock record for {item}")
        left = int(value)
        if left <= 0:
            return False
        ok, _ = client.transaction(
            # Nobody changed the count since we read it ...
            compare=[client.transactions.mod(count_key) == meta.mod_revision],
            # ... so take one and record the order, atomically.
            success=[
                client.transactions.put(count_key, str(left - 1)),
                client.transactions.put(f"/shop/orders/{item}/{buyer}", "1"),
            ],
            failure=[],
        )
        if ok:
            return True
        # Someone else bought in between: read again and retry.


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", default="127.0.0.1:2379")
    p.add_argument("--item", default="widget")
    p.add_argument("--stock", type=int, default=10)
    p.add_argument("--buyers", type=int, default=25)
    args = p.parse_args()
    host, port = args.endpoint.rsplit(":", 1)

    admin = etcd3.client(host=host, port=int(port), timeout=10)
    admin.delete_prefix(f"/shop/orders/{args.item}/")
    admin.put(f"/shop/stock/{args.item}", str(args.stock))

    sold = []
    lock = threading.Lock()
    errors = []

    def buyer(n: int) -> None:
        try:
            # One connection per buyer: they really race.
            c = etcd3.client(host=host, port=int(port), timeout=10)
            name = f"buyer-{n:03d}"
            if buy(c, args.item, name):
                with lock:
                    sold.append(name)
                print(f"{name}: bought one {args.item}")
            else:
                print(f"{name}: sold out")
        except Exception as e:  # report, and fail the run below
            errors.append(f"buyer {n}: {e!r}")

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(args.buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1

    left = int(admin.get(f"/shop/stock/{args.item}")[0])
    orders = list(admin.get_prefix(f"/shop/orders/{args.item}/"))
    expected = min(args.stock, args.buyers)
    print(f"sold {len(sold)}, {len(orders)} orders recorded, {left} left in stock")
    if len(sold) != expected or len(orders) != expected or left != args.stock - expected:
        print(f"OVERSOLD or lost a sale: expected {expected} sales and "
              f"{args.stock - expected} left", file=sys.stderr)
        return 1
    print("OK: never oversold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
