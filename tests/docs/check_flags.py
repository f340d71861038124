#!/usr/bin/python3
"""docs/configuration.md must list every flag keel accepts, and only those.

Usage: check_flags.py <keel binary> <docs/configuration.md>

The flags come from `keel --help` (CLI11 lists every option it parses); the
documented ones are the `--flag` names in the first column of the doc's
tables. Exit status 1 names what is missing or stale.
"""

import re
import subprocess
import sys


def accepted_flags(keel: str) -> set[str]:
    out = subprocess.run([keel, "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        sys.exit(f"{keel} --help failed ({out.returncode}): {out.stderr}")
    flags = set()
    for line in out.stdout.splitlines():
        # "  -h,--help   Print this help..." / "  --name TEXT ..."
        m = re.match(r"\s+((?:-\w,)?--[a-z][a-z0-9-]*)", line)
        if m:
            flags.update(re.findall(r"--[a-z][a-z0-9-]*", m.group(1)))
    if len(flags) < 5:
        sys.exit(f"could not read the flags from `{keel} --help`:\n{out.stdout}")
    return flags


def documented_flags(doc: str) -> set[str]:
    flags = set()
    with open(doc, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("| `--"):
                continue
            first_cell = line.split("|")[1]
            flags.update(re.findall(r"`(--[a-z][a-z0-9-]*)`", first_cell))
    return flags


def main() -> int:
    keel, doc = sys.argv[1], sys.argv[2]
    have = accepted_flags(keel)
    documented = documented_flags(doc)
    missing = sorted(have - documented)
    stale = sorted(documented - have)
    if missing:
        print(f"{doc}: flags keel accepts but the reference does not list: {', '.join(missing)}")
    if stale:
        print(f"{doc}: flags the reference lists but keel does not accept: {', '.join(stale)}")
    if missing or stale:
        return 1
    print(f"{doc}: all {len(have)} flags documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
