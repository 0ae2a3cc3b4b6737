"""A participant's signed links (unsubscribe, calendar feed), as e-mails and the API give them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.links import sign_link


@dataclass(frozen=True)
class Links:
    """A participant's signed links; `issued_at`: when (default now), e.g. a revocation's time."""

    base_url: str
    secret: str
    issued_at: datetime | None = None

    PURPOSES = ("unsubscribe", "feed")

    def unsubscribe(self, registration_id: str) -> str:
        token = sign_link(
            self.secret, "unsubscribe", registration_id, "*", issued_at=self.issued_at
        )
        return f"{self.base_url}/unsubscribe/{token}"

    def feed(self, registration_id: str) -> str:
        token = sign_link(self.secret, "feed", registration_id, issued_at=self.issued_at)
        return f"{self.base_url}/calendar/{token}.ics"
