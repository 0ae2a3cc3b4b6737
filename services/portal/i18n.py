"""The portal's texts: message catalogues (gettext .po files, read with Babel), English
the source language and German a translation. A language is chosen by `?lang=`, then the
`portal_lang` cookie, then the browser's Accept-Language; English when none fits."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.core import negotiate_locale
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from fastapi import Request

LOCALES = Path(__file__).parent / "locales"
LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT = "en"
COOKIE = "portal_lang"

Translate = Callable[..., str]

# Codes the services answer with, which pages show translated (`_(status)`); the English
# catalogue gives their labels.
CODES = (
    *("pending", "approved", "rejected", "waitlisted", "withdrawn"),  # registrations
    *("accepted", "declined", "cancelled", "expired"),  # meeting requests
    *("business", "cluster", "research", "other"),  # organisation types
    *("cooperation_possible", "informative_no_cooperation", "no_interest", "did_not_take_place"),
)


@cache
def catalogue(language: str) -> Catalog:
    with (LOCALES / language / "LC_MESSAGES" / "portal.po").open("rb") as po:
        return read_po(po, locale=language)


@cache
def translations(language: str) -> dict[str, str]:
    """msgid -> text (empty or fuzzy entries fall back to the English msgid)."""
    return {
        str(m.id): str(m.string)
        for m in catalogue(language)
        if m.id and m.string and not m.fuzzy and isinstance(m.id, str)
    }


def translator(language: str) -> Translate:
    table = translations(language)

    def translate(message: str, **values: object) -> str:
        text = table.get(message, message)
        return text.format(**values) if values else text

    return translate


def language_of(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    header = request.headers.get("accept-language", "")
    wanted = [part.split(";")[0].strip().replace("-", "_") for part in header.split(",")]
    best = negotiate_locale([w for w in wanted if w], list(LANGUAGES), sep="_")
    if best is None:  # "de_DE" -> "de"
        best = negotiate_locale([w.split("_")[0] for w in wanted if w], list(LANGUAGES))
    return best or DEFAULT
