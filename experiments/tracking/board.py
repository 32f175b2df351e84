"""``python run.py board [--port 9000]``: Omniboard on http://127.0.0.1:PORT/sacred against the
runs database (``LVMAE_MONGO_URL``, else the local SecantusDB, started if needed).

Omniboard is the npm package ``omniboard@2.16.1`` that ``scripts/setup_tools.sh`` installs in
``.tools/node``; it listens on loopback only (``board_loopback.cjs``) and gets the database URL
through its environment, never its command line. Ctrl-C (or SIGTERM) stops it cleanly; after a
database outage that Omniboard does not survive, the board restarts it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lvmae.experiments import program
from lvmae.experiments.tracking import local_db
from lvmae.experiments.tracking.observers import DEFAULT_DB, MONGO_DB_ENV, ObserverSetupError, mongo_url
from lvmae.experiments.tracking.redact import safe_url

ROOT = Path(__file__).resolve().parents[2]   # the repository (or installed package) root
OMNIBOARD_ENV = "LVMAE_OMNIBOARD"   # path to an omniboard start.js, to use another install
LOCAL_OMNIBOARD = ROOT / ".tools" / "node" / "node_modules" / "omniboard" / "dist" / "start.js"
LOOPBACK_PRELOAD = Path(__file__).with_name("board_loopback.cjs")
DEFAULTS_PRELOAD = Path(__file__).with_name("board_defaults.cjs")    # plot selection, picture size
DEFAULT_PORT = 9000
READY_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 10.0


def omniboard_script() -> Path:
    script = Path(os.environ.get(OMNIBOARD_ENV, LOCAL_OMNIBOARD))
    if not script.is_file():
        raise SystemExit(f"board: Omniboard not found at {script}; install it with scripts/setup_tools.sh "
                         f"(npm omniboard@2.16.1 into .tools/node) or set {OMNIBOARD_ENV}")
    if not shutil.which("node"):
        raise SystemExit("board: `node` not found; install Node.js >= 18")
    return script


def with_database(url: str, db_name: str) -> str:
    """``url`` with ``/db_name`` as its path (Omniboard reads the database from the path)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + db_name, parts.query, parts.fragment))


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((local_db.LOOPBACK, port))
        except OSError:
            return False
    return True


def wait_ready(base: str, process: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"board: Omniboard exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/v1/Runs/count?query={{}}", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"board: Omniboard did not answer at {base} within {timeout_s:.0f} s")


def api_healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/v1/Runs/count?query={{}}", timeout=5) as answer:
            return answer.status == 200
    except OSError:   # HTTPError (500 "pool destroyed") and connection errors alike
        return False


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{program.name()} board", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    script = omniboard_script()
    if not port_free(args.port):
        raise SystemExit(f"board: port {args.port} on {local_db.LOOPBACK} is taken; choose another with --port")
    try:
        url, origin = mongo_url()
    except ObserverSetupError as error:
        raise SystemExit(str(error)) from error
    problem = local_db.ping(url)
    if problem:
        raise SystemExit(f"board: the database at {safe_url(url)} (from {origin}) does not answer: {problem}")
    from lvmae.experiments.tracking.dead_runs import mark_at
    mark_at(url, os.environ.get(MONGO_DB_ENV, DEFAULT_DB), safe_url(url))
    database_url = with_database(url, os.environ.get(MONGO_DB_ENV, DEFAULT_DB))
    from lvmae.experiments.tracking import board_columns
    board_columns.ensure(url, os.environ.get(MONGO_DB_ENV, DEFAULT_DB))
    environment = {**os.environ, "PORT": str(args.port), "MONGO_URI": database_url, "NODE_ENV": "production",
                   board_columns.PLOT_ENV: board_columns.plot_names()}
    command = ["node", "-r", str(LOOPBACK_PRELOAD), "-r", str(DEFAULTS_PRELOAD), str(script)]
    start = lambda: subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL, cwd=script.parent)
    process = start()
    stopping = threading.Event()

    def stop(*_):
        stopping.set()
        process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    base = f"http://{local_db.LOOPBACK}:{args.port}/sacred"
    try:
        wait_ready(base, process)
        print(f"Omniboard: {base}  (database {safe_url(database_url)}; Ctrl-C stops it)", flush=True)
        # Omniboard answers "pool destroyed" forever after a database outage of > ~30 s: when its
        # API fails while the database answers, restart it (same port, same URL).
        while not stopping.wait(WATCH_INTERVAL_S) and process.poll() is None:
            if not api_healthy(base) and local_db.ping(url) is None and not stopping.is_set():
                print("board: Omniboard lost the database; restarting it", flush=True)
                process.terminate()
                process.wait(timeout=30)
                process = start()
                wait_ready(base, process)
        process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    print("Omniboard stopped", flush=True)
    return 0 if stopping.is_set() or process.returncode in (0, -signal.SIGTERM) else process.returncode
