"""Chat, push and SMS through Apprise: one target per call, so each has its own result."""

from __future__ import annotations

import apprise

from services.notifier.channels import PermanentDeliveryError, TransientDeliveryError


async def send_apprise(url: str, *, title: str, body: str, timeout: float) -> str:
    """Deliver to one Apprise URL; return a short reply, or raise a DeliveryError.

    Apprise reports only success or failure per target, so a failure is treated as transient:
    it is retried with backoff and, after the last attempt, the contact's next channel is used.
    """
    target = apprise.Apprise()
    if not target.add(url):
        # Never echo the URL: it usually carries the service's token.
        raise PermanentDeliveryError("the apprise URL in district.yaml is not one Apprise knows")
    result = await target.async_notify(body=body, title=title, timeout=timeout)
    if not result:
        raise TransientDeliveryError("the apprise target did not accept the notification")
    return "accepted by apprise target"
