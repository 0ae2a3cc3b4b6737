"""Webhooks the Standard Webhooks way: signed POSTs, retried by the delivery queue.

Each request carries `webhook-id` (the delivery's id, the same on every retry, so
a receiver can drop repeats), `webhook-timestamp` (seconds since the epoch, of
this attempt) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256, keyed
with the endpoint's secret, of `{id}.{timestamp}.{body}`. Secrets look like
`whsec_<base64 of the key bytes>`; the key is the decoded part after the prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import httpx

SECRET_PREFIX = "whsec_"


class WebhookFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one request."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, webhook_id, timestamp, body),
        "user-agent": "matchmaking-notification/1",
    }


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    secret: str,
    webhook_id: str,
    timestamp: int,
    body: bytes,
) -> int:
    """POST once; return the status, or raise `WebhookFailed` (anything but a 2xx)."""
    try:
        response = await client.post(
            url, content=body, headers=headers(secret, webhook_id, timestamp, body)
        )
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        # 410 Gone: the receiver says the endpoint is no more; stop trying.
        raise WebhookFailed(f"HTTP {response.status_code}", permanent=response.status_code == 410)
    return response.status_code
