from portal.jobs import job
from portal.services.scheduler import run_tick


@job
def tick() -> dict[str, int]:
    return run_tick()
