"""Delivery channels. Errors form one tree: transient (retry later) or permanent (give up)."""

from __future__ import annotations

import re
from email.message import EmailMessage

import aiosmtplib

from services.runtime.settings import Settings

_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


class DeliveryError(Exception):
    """Base of the notifier's errors."""

    permanent = False

    def __init__(self, reason: str) -> None:
        super().__init__(scrub(reason))
        self.reason = scrub(reason)


class TransientDeliveryError(DeliveryError):
    """The receiving side may accept later (4xx, connection refused, timeout)."""


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help (5xx, unknown contact, no usable channel)."""

    permanent = True


def scrub(text: str, limit: int = 300) -> str:
    """Replies may echo the recipient's address; the log keeps no contact details. (The
    pattern needs an @: a reply without one, as most are, skips it.)"""
    text = " ".join(text.split())
    if "@" in text:
        text = _ADDRESS.sub("<address>", text)
    return text[:limit]


def classify_smtp(code: int, message: str) -> DeliveryError:
    """5xx is permanent; anything else (4xx, odd codes) may succeed later."""
    text = f"{code} {message}"
    return PermanentDeliveryError(text) if 500 <= code < 600 else TransientDeliveryError(text)


_classify = classify_smtp


async def send_email(message: EmailMessage, *, settings: Settings) -> str:
    """Send one message on a new connection; return the reply (`250 OK`) or raise DeliveryError.

    The notifier uses `smtp.SmtpPool`, which reuses sessions; this is the one-shot baseline.
    """
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            start_tls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            timeout=settings.smtp_timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        raise _classify(first.code, first.message) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise _classify(exc.code, exc.message) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from None
    if errors:
        code, text = next(iter(errors.values()))
        raise _classify(code, text)
    return scrub(reply)
