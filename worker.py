"""RQ worker for the portal's queues, with the web app's configuration.

    python worker.py [--burst] [queue ...]

Jobs run inside this app's context; each forked job gets its own database
session.
"""
from __future__ import annotations

import argparse
import logging
import sys

from rq import Worker

from portal import create_app
from portal.config import ConfigError
from portal.queues import redis_connection


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
        worker = Worker(queues, connection=redis_connection())
        worker.work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
