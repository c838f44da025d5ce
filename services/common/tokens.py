"""Signed capability tokens for links sent to responders (HMAC-SHA256, DOORALERT_SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: str, purpose: str, subject: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\x1f{subject}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def view_token(secret: str, incident_id: str) -> str:
    """A token that lets its holder read one incident's status page, and nothing else."""
    return _mac(secret, "view", incident_id)


def check_view_token(secret: str, incident_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(view_token(secret, incident_id), token or "")
