"""Do acknowledged writes survive a database killed right after them? (why the observers write
with ``journal=True``.) For each write concern, starts a SecantusDB daemon, makes UPSERTS
metric-style ``$push`` upserts, SIGKILLs the daemon at once, restarts it and counts what is left.

    .venv/bin/python benchmarks/tracking_durability.py [--trials 3] [--upserts 5]
"""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymongo

from lvmae.experiments.tracking import local_db


class Daemon:
    """``secantusd-py`` on 127.0.0.1 with data in ``folder``; keeps its port across restarts."""

    def __init__(self, folder: Path):
        self.folder = folder
        with socket.socket() as probe:
            probe.bind((local_db.LOOPBACK, 0))
            self.port = probe.getsockname()[1]
        self.url = f"mongodb://{local_db.LOOPBACK}:{self.port}/?directConnection=true"
        self.process: subprocess.Popen | None = None

    def start(self) -> Daemon:
        self.process = subprocess.Popen(
            [local_db.daemon_path(), "--host", local_db.LOOPBACK, "--port", str(self.port),
             "--storage-path", str(self.folder), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + local_db.START_TIMEOUT_S
        while local_db.ping(self.url, timeout_ms=500) is not None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"secantusd-py did not start on port {self.port}")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: the outage a crash or a pulled cable would cause."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=local_db.STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=local_db.STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()


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
