"""Helpers for the tracking tests: a SecantusDB daemon the test can kill and restart, and
``run.py`` in a subprocess with its own runs folder."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lvmae.experiments.tracking import local_db

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Daemon:
    """``secantusd-py`` on 127.0.0.1 with data in ``folder``; keeps its port across restarts."""

    def __init__(self, folder: Path, auth: bool = False, credentials: str = ""):
        self.folder = Path(folder)
        self.port = free_port()
        self.auth = auth
        self.credentials = credentials          # "user:password@" once a user exists
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        extra = "&authSource=admin" if self.credentials else ""
        return f"mongodb://{self.credentials}127.0.0.1:{self.port}/?directConnection=true{extra}"

    def start(self, timeout_s: float = 30.0) -> Daemon:
        command = [local_db.daemon_path(), "--host", "127.0.0.1", "--port", str(self.port),
                   "--storage-path", str(self.folder), "--log-level", "WARNING"]
        self.process = subprocess.Popen(command + (["--auth"] if self.auth else []),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while local_db.ping(self.url, timeout_ms=500) is not None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"secantusd-py did not start on port {self.port}")
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: the outage a crash or a pulled cable would cause."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) listening on TCP ``port``; Linux only.
    ``0100007F`` is 127.0.0.1; ``00000000`` would be every interface."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def lvmae_env(runs_dir: Path, **extra: str) -> dict:
    environment = {**os.environ, "LVMAE_RUNS_DIR": str(runs_dir), "PYTHONWARNINGS": "ignore"}
    for name in ("LVMAE_MONGO_URL", "LVMAE_OBSERVER", "LVMAE_DB_FALLBACK", "LVMAE_MONGO_DB"):
        environment.pop(name, None)
    environment.update(extra)
    return environment


def run_lvmae(args: list[str], runs_dir: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                          env=lvmae_env(runs_dir, **extra), capture_output=True, text=True, timeout=timeout)


def start_lvmae(args: list[str], runs_dir: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                            env=lvmae_env(runs_dir, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
