"""Redis connection and RQ queues, configured from the app."""
from __future__ import annotations

from flask import current_app
from redis import Redis
from rq import Queue

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
