"""The session: who is signed in, kept in one cookie, encrypted and authenticated
(Fernet: AES-128-CBC + HMAC-SHA256) with a key derived from PORTAL_SESSION_SECRET. The
API key is in it, so it is HttpOnly, SameSite=Lax (no cross-site form posts carry it) and
expires; nothing about the session is stored on the server."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

COOKIE = "portal_session"
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Session:
    key: str  # the API key (never shown again, never logged)
    role: str  # organisation, organiser, co_organiser, admin
    id: str  # registration id, organiser id, co-organiser id, "admin"
    name: str = ""
    event_id: str = ""  # an organisation's or co-organiser's event
    office_id: str = ""  # a co-organiser's support office

    @property
    def is_participant(self) -> bool:
        return self.role == "organisation"


class Sessions:
    def __init__(self, secret: str, *, secure: bool = False) -> None:
        derived = hashlib.sha256(b"portal-session\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._secure = secure

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def open(self, token: str) -> Session | None:
        try:
            data = json.loads(self._fernet.decrypt(token.encode(), ttl=MAX_AGE))
            return Session(**data)
        except (InvalidToken, ValueError, TypeError):
            return None

    def of(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE)
        return self.open(token) if token else None

    def keep(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.seal(session),
            max_age=MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=self._secure,
            path="/",
        )

    def drop(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")
