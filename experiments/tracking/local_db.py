"""The project's own MongoDB endpoint: a SecantusDB daemon (``secantusd-py``, the optional
``lvmae[localdb]`` extra, GPL-2.0, only ever run as a separate process) on 127.0.0.1 with its
data under the runs folder::

    <runs>/db/data/         WiredTiger files (survive restarts, SIGTERM and SIGKILL)
    <runs>/db/server.json   {"pid", "port", "url", "storage_path"} of the running daemon
    <runs>/db/port          the port the data was last served on (kept across stops)
    <runs>/db/server.log    the daemon's output
    <runs>/db/.lock         serialises start/stop between concurrent runs

Started on demand by the first run that needs it (or by ``python run.py db start``), reused by
every later run and by ``python run.py board``; it keeps running after a run ends (so runs stay
browsable) until ``python run.py db stop``.

The port is chosen once (``--port``, ``LVMAE_DB_PORT`` or a free one) and kept beside the
data: a restart after ``db stop``, a crash or a kill serves the same URL, so runs that were
writing when the server went away reconnect by themselves and flush what they queued.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lvmae.experiments import program

RUNS_DIR_ENV = "LVMAE_RUNS_DIR"
DB_PORT_ENV = "LVMAE_DB_PORT"
DAEMON = "secantusd-py"
LOOPBACK = "127.0.0.1"           # never another interface: the daemon has no auth by default
START_TIMEOUT_S = 30.0           # a cold WiredTiger open takes ~0.6 s; 2 busy cores need margin
STOP_TIMEOUT_S = 15.0
PING_TIMEOUT_MS = 2000
PORT_FILE = "port"


class LocalDatabaseError(RuntimeError):
    """The local server cannot be started, reached or stopped; the message says why and what to do."""


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs")).resolve()


def db_dir(runs: Path | None = None) -> Path:
    return (runs or runs_dir()) / "db"


def daemon_path() -> str:
    """``secantusd-py`` next to this interpreter (an unactivated venv) or on PATH."""
    beside = Path(sys.executable).parent / DAEMON
    found = str(beside) if beside.is_file() else shutil.which(DAEMON)
    if not found:
        raise LocalDatabaseError(
            f"{DAEMON} not found: install the local database extra (pip install 'lvmae[localdb]' "
            "or scripts/setup.sh), point LVMAE_MONGO_URL at a MongoDB, or set LVMAE_OBSERVER=file "
            "to record runs as files")
    return found


def daemon_installed() -> bool:
    """Whether :func:`daemon_path` finds ``secantusd-py`` (the ``lvmae[localdb]`` extra)."""
    try:
        daemon_path()
    except LocalDatabaseError:
        return False
    return True


def ping(url: str, timeout_ms: int = PING_TIMEOUT_MS) -> str | None:
    """None when the server at ``url`` answers ``ping`` within ``timeout_ms``, else the reason."""
    import pymongo
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms) as client:
            client.admin.command("ping")
        return None
    except Exception as error:  # noqa: BLE001  (pymongo raises many types; the caller needs the text)
        return f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _port_from_env() -> int | None:
    text = os.environ.get(DB_PORT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise LocalDatabaseError(f"{DB_PORT_ENV}={text!r} is not a TCP port (1-65535)")
    return int(text)


def stored_port(runs: Path | None = None) -> int | None:
    """The port this folder's data was last served on (``<runs>/db/port``), if any."""
    try:
        text = (db_dir(runs) / PORT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _store_port(folder: Path, port: int) -> None:
    temporary = folder / (PORT_FILE + ".tmp")
    temporary.write_text(f"{port}\n", encoding="utf-8")
    os.replace(temporary, folder / PORT_FILE)


def _port_taken(port: int) -> bool:
    """Another program listens on ``port`` (connections of the stopped server that linger in
    TIME_WAIT do not count: the daemon binds with SO_REUSEADDR, as the probe does)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def _alive(pid: int) -> bool:
    """True when ``pid`` runs and (on Linux) is a SecantusDB daemon, not a recycled pid."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            text = cmdline.read_bytes()
        except OSError:
            return False
        return b"secantus" in text and b"<defunct>" not in text
    return True


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(runs: Path | None = None) -> dict | None:
    path = db_dir(runs) / "server.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def status(runs: Path | None = None) -> dict | None:
    """The running server's state (with ``url``), or None when none runs for this folder."""
    state = read_state(runs)
    if state and _alive(state["pid"]) and ping(state["url"]) is None:
        return state
    return None


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def ensure_server(runs: Path | None = None, port: int | None = None) -> str:
    """URL of this folder's server, starting the daemon when none answers. Safe to call from
    concurrent processes (a file lock serialises them; a second daemon on the same data folder
    would fail with "Device or resource busy")."""
    folder = db_dir(runs)
    if not (folder / "server.json").is_file():
        daemon_path()      # not installed: say so before creating anything under <runs>/db
    with _locked(folder):
        state = status(runs)
        if state:
            return state["url"]
        old = read_state(runs)
        if old and _alive(old["pid"]):
            raise LocalDatabaseError(
                f"a SecantusDB daemon (pid {old['pid']}) holds {folder / 'data'} but does not answer "
                f"at {old['url']}; stop it with `{program.name()} db stop` (log: {folder / 'server.log'})")
        remembered = stored_port(runs)
        port = port or _port_from_env() or remembered
        if port is None or (port == remembered and _port_taken(port)):
            if port is not None:
                print(f"lvmae tracking: port {port} (where {folder / 'data'} was served) is taken by "
                      "another program; serving on a new port — running jobs will not reconnect",
                      file=sys.stderr)
            port = _free_port()
        url = f"mongodb://{LOOPBACK}:{port}/?directConnection=true"
        log_path = folder / "server.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [daemon_path(), "--host", LOOPBACK, "--port", str(port),
                 "--storage-path", str(folder / "data"), "--log-level", "WARNING"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # outlives the run that started it, immune to its Ctrl-C
        deadline = time.monotonic() + START_TIMEOUT_S
        reason = "not started"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalDatabaseError(f"{DAEMON} exited with code {process.returncode} on port {port}:\n"
                                         f"{_log_tail(log_path)}")
            reason = ping(url, timeout_ms=500)
            if reason is None:
                state = {"pid": process.pid, "port": port, "url": url, "storage_path": str(folder / "data")}
                (folder / "server.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
                _store_port(folder, port)
                return url
            time.sleep(0.2)
        process.terminate()
        raise LocalDatabaseError(f"{DAEMON} did not answer on {url} within {START_TIMEOUT_S:.0f} s "
                                 f"({reason}):\n{_log_tail(log_path)}")


def stop_server(runs: Path | None = None) -> dict | None:
    """Stops this folder's daemon (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``; its data
    survives both). Returns the state it stopped, or None when none ran."""
    folder = db_dir(runs)
    with _locked(folder):
        state = read_state(runs)
        if not state:
            return None
        pid = state["pid"]
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        (folder / "server.json").unlink(missing_ok=True)
        return state
