"""Redis connection and RQ queues, configured from the app."""
from __future__ import annotations

import logging

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

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


# A job in one of these states is still to run (or running, or waiting for its retry).
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)


def enqueue_job(name: str, *args, job_id: str, queue_name: str = DEFAULT) -> bool:
    """Hand a job to RQ with retries and backoff, under a deterministic ``job_id`` (one job per unit
    of work). While a job of that id is still waiting, running or due for a retry, it is not
    enqueued again (RQ itself would run it twice); once it has finished or failed, it is. Returns
    whether the work is in RQ's hands. If Redis is down, log it and return False: the tick finds
    the work again from the database."""
    try:
        try:
            if Job.fetch(job_id, connection=redis_connection()).get_status() in WAITING:
                return True
        except NoSuchJobError:
            pass
        queue(queue_name).enqueue(name, *args, job_id=job_id,
                                  retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
                                  result_ttl=3600, failure_ttl=7 * 24 * 3600)
        return True
    except RedisError as exc:
        log.warning("could not enqueue %s%s: %s (the tick will retry)", name, args, exc)
        return False
