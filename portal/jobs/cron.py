"""``rq cron`` configuration: the tick, every minute.

Run it with ``rq cron portal/jobs/cron.py --url $REDIS_URL`` (the launcher
and the Procfile do).
"""
from rq import cron

from portal.jobs.scheduler import tick
from portal.queues import PERIODIC

cron.register(tick, PERIODIC, interval=60, job_timeout=600, name="portal-tick")
