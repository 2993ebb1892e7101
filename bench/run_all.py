"""Run every benchmark in bench/ and print their JSON lines.

``make bench`` runs them on the database in ``TESSERA_BENCH_DB`` (``sqlite`` by default,
``postgres`` with ``TESSERA_TEST_PG_ADMIN_URL`` set). Each benchmark prints one JSON line
with what it measured, how many, how long and on which database. ``run_all.py [names…]
[--quick]``: only the named benchmarks; ``--quick`` runs contacts_import, segment_count and
contact_lookup at small sizes (they read ``TESSERA_BENCH_DB`` for their ``--db``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# Small sizes for ``--quick`` (the customer-data benches default to 1M contacts).
QUICK = {
    "contacts_import": ["--rows", "20000"],
    "segment_count": ["--contacts", "20000", "--events", "200000"],
    "contact_lookup": ["--contacts", "20000", "--lookups", "1000"],
}


def main() -> int:
    args = sys.argv[1:]
    quick = "--quick" in args
    only = {a for a in args if a != "--quick"}
    failures = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name in ("run_all.py", "__init__.py") or script.name.startswith("_"):
            continue
        if only and script.stem not in only:
            continue
        print(f"# {script.stem}", file=sys.stderr, flush=True)
        extra = QUICK.get(script.stem, []) if quick else []
        r = subprocess.run([sys.executable, str(script), *extra], env=os.environ.copy())
        failures += r.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
