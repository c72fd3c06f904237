from portal.jobs import job
from portal.services import deliveries


@job
def deliver(delivery_id: int) -> str:
    return deliveries.deliver(delivery_id)
