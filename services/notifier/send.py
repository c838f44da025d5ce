"""Carrying a planned delivery out: the channels' long-lived clients and the one `send`.

The plan (plan.py) has already chosen the channel and built the content; here the email goes
to the SMTP pool, the webhook body is signed and posted, the Apprise text handed to Apprise.
"""

from __future__ import annotations

from datetime import datetime

import httpx

from services.notifier.apprise_channel import send_apprise
from services.notifier.plan import AppriseDelivery, Delivery, EmailDelivery, WebhookDelivery
from services.notifier.smtp import Begun, SmtpPool
from services.notifier.webhook import post_webhook
from services.runtime.settings import Settings


class Sender:
    """Sends planned deliveries over pooled SMTP sessions and one HTTP client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp = SmtpPool(settings=settings)
        self._http: httpx.AsyncClient | None = None

    async def send(self, delivery: Delivery, *, now: datetime, begun: Begun | None = None) -> str:
        """Send it; return the receiving side's reply or raise a DeliveryError. `now` is the
        signed timestamp of a webhook; `begun`, the email's transaction started by
        `SmtpPool.begin` (used or ended here)."""
        if begun is not None and not isinstance(delivery, EmailDelivery):
            begun.drop()
        timeout = self.settings.webhook_timeout
        if isinstance(delivery, WebhookDelivery):
            return await post_webhook(
                self.http(),
                delivery.url,
                delivery.payload,
                secret=self.webhook_secret,
                now=now,
                timeout=timeout,
            )
        if isinstance(delivery, AppriseDelivery):
            return await send_apprise(
                delivery.url, title=delivery.title, body=delivery.body, timeout=timeout
            )
        return await self.smtp.send(delivery.message, begun)

    @property
    def webhook_secret(self) -> str:
        """The key webhook bodies are signed with (see Settings.webhook_signing_secret)."""
        return self.settings.webhook_signing_secret()

    def http(self) -> httpx.AsyncClient:
        """The HTTP client for webhooks, created on first use."""
        if self._http is None:
            # No redirects: a signed alert goes only to the URL the directory names.
            self._http = httpx.AsyncClient(
                follow_redirects=False, timeout=self.settings.webhook_timeout
            )
        return self._http

    async def close(self) -> None:
        """Close the pooled SMTP sessions and the HTTP client."""
        await self.smtp.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
