"""RQ worker for the portal's queues, with the web app's configuration.

    python worker.py [--burst] [queue ...]

Jobs run inside this app's context; each forked job gets its own database
session. If Redis cannot be reached (at start, or later), the worker waits
and tries again with backoff, saying why, instead of exiting.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import RedisError
from rq import Worker

from portal import create_app
from portal.config import ConfigError
from portal.queues import redis_connection

log = logging.getLogger("portal.worker")

# Seconds between attempts to reach Redis: doubling from 1, at most 30.
FIRST_WAIT = 1.0
MAX_WAIT = 30.0
RESTART_WAIT = 5.0


def _shown(url: str) -> str:
    """The Redis URL without its password, for the log."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def wait_for_redis(connection, url: str) -> None:
    """Return once Redis answers PING; until then log why and wait, with backoff."""
    wait = FIRST_WAIT
    while True:
        try:
            connection.ping()
            return
        except RedisError as exc:
            log.warning("waiting for Redis at %s: %s; trying again in %.0f s", _shown(url), exc, wait)
        time.sleep(wait)
        wait = min(wait * 2, MAX_WAIT)


class PortalWorker(Worker):
    """RQ's worker, remembering whether it was asked to stop (SIGTERM/SIGINT)."""

    asked_to_stop = False

    def request_stop(self, signum, frame):
        self.asked_to_stop = True
        return super().request_stop(signum, frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("queues", nargs="*")
    parser.add_argument("--burst", action="store_true", help="Exit when the queues are empty.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        app = create_app()
    except ConfigError as error:
        sys.exit(f"portal: {error}")
    with app.app_context():
        queues = args.queues or app.config["RQ_QUEUES"]
        connection = redis_connection()
        while True:
            wait_for_redis(connection, app.config["REDIS_URL"])
            log.info("connected to Redis at %s", _shown(app.config["REDIS_URL"]))
            worker = PortalWorker(queues, connection=connection)
            try:
                worker.work(burst=args.burst, with_scheduler=True)
            except RedisError as exc:
                log.warning("lost Redis while starting or stopping: %s", exc)
            if args.burst or worker.asked_to_stop:
                return
            # RQ leaves its loop when Redis times out or goes away; wait for it and start over.
            _restore_default_signals()
            log.warning("the worker stopped without being asked to (Redis unreachable?); starting again in %.0f s",
                        RESTART_WAIT)
            time.sleep(RESTART_WAIT)


def _restore_default_signals() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    main()
