"""Redis connection and RQ queues, configured from the app."""
from __future__ import annotations

import logging

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry

log = logging.getLogger(__name__)

# Queues by purpose: emails go out fast; periodic holds the tick; default the rest.
EMAILS = "emails"
DEFAULT = "default"
PERIODIC = "periodic"


def redis_connection(url: str | None = None) -> Redis:
    url = url or current_app.config["REDIS_URL"]
    cache = current_app.extensions.setdefault("portal_redis", {})
    conn = cache.get(url)
    if conn is None:
        conn = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        cache[url] = conn
    return conn


def queue(name: str = DEFAULT) -> Queue:
    return Queue(name, connection=redis_connection())


# Retries for work jobs (payments, autopay, notices): RQ re-runs a failed job after these delays.
RETRY_INTERVALS = [10, 30, 60, 300, 900]


def enqueue_job(name: str, *args, job_id: str, queue_name: str = DEFAULT) -> bool:
    """Hand a job to RQ with retries and backoff, under a deterministic ``job_id`` (one job per unit
    of work: a second enqueue of the same id while the first waits is the same job). If Redis is
    down, log it and return False: the tick's sweep finds the work again from the database."""
    try:
        queue(queue_name).enqueue(name, *args, job_id=job_id,
                                  retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
                                  result_ttl=3600, failure_ttl=7 * 24 * 3600)
        return True
    except RedisError as exc:
        log.warning("could not enqueue %s%s: %s (the tick will retry)", name, args, exc)
        return False
