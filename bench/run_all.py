"""Run every benchmark in bench/ and print their JSON lines.

``make bench`` runs them on the database in ``TESSERA_BENCH_DB`` (``sqlite`` by default,
``postgres`` with ``TESSERA_TEST_PG_ADMIN_URL`` set). Each benchmark prints one JSON line
with what it measured, how many, how long and on which database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = set(sys.argv[1:])
    failures = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name in ("run_all.py", "__init__.py") or script.name.startswith("_"):
            continue
        if only and script.stem not in only:
            continue
        print(f"# {script.stem}", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, str(script)], env=os.environ.copy())
        failures += r.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
