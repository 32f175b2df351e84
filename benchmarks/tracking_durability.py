"""Do acknowledged writes survive a database killed right after them? (why the observers write
with ``journal=True``.) For each write concern, starts a SecantusDB daemon, makes UPSERTS
metric-style ``$push`` upserts, SIGKILLs the daemon at once, restarts it and counts what is left.

    /work/main/.venv/bin/python benchmarks/tracking_durability.py [--trials 3] [--upserts 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pymongo  # noqa: E402

from tests.tracking_support import Daemon  # noqa: E402


def trial(journal: bool, upserts: int) -> tuple[int, float]:
    """(documents left after kill + restart, seconds the upserts took)."""
    with tempfile.TemporaryDirectory() as folder:
        daemon = Daemon(Path(folder)).start()
        try:
            client = pymongo.MongoClient(daemon.url, journal=journal)
            started = time.perf_counter()
            for index in range(upserts):
                client.bench.metrics.update_one({"name": f"m{index}"},
                                                {"$push": {"values": {"$each": [1.0, 2.0]}}}, upsert=True)
            elapsed = time.perf_counter() - started
            daemon.kill()
            daemon.start()
            return pymongo.MongoClient(daemon.url).bench.metrics.count_documents({}), elapsed
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--upserts", type=int, default=5)
    args = parser.parse_args()
    for journal in (False, True):
        results = [trial(journal, args.upserts) for _ in range(args.trials)]
        kept = [k for k, _ in results]
        per_write_ms = 1000 * sum(t for _, t in results) / (args.trials * args.upserts)
        print(f"journal={journal!s:5}  kept after SIGKILL: {kept} of {args.upserts}  "
              f"({per_write_ms:.1f} ms per acknowledged write)")


if __name__ == "__main__":
    main()
