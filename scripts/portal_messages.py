"""Updates the portal's message catalogues (services/portal/locales/*/LC_MESSAGES/portal.po)
from the texts in its templates and code, keeping the translations already made.

    python -m scripts.portal_messages          # rewrite the catalogues
    python -m scripts.portal_messages --check  # exit 1 if a catalogue is stale
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from services.portal import i18n
from services.portal.web import NOTICES

PORTAL = Path(__file__).resolve().parent.parent / "services" / "portal"
CALL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def messages() -> list[str]:
    """Every text the portal may show: `_("…")` in templates and code, the notices, and
    the codes the services answer with that pages translate (`_(status)`)."""
    found: set[str] = set(NOTICES.values()) | set(i18n.CODES)
    for path in [*PORTAL.glob("templates/*.html"), *PORTAL.glob("*.py")]:
        for match in CALL.finditer(path.read_text()):
            found.add(match.group(1) if match.group(1) is not None else match.group(2))
    return sorted(found)


def updated(language: str, wanted: list[str]) -> bytes:
    path = i18n.LOCALES / language / "LC_MESSAGES" / "portal.po"
    old = read_po(path.open("rb"), locale=language) if path.exists() else Catalog(locale=language)
    new = Catalog(locale=language, project="matchmaking-portal", fuzzy=False)
    for text in wanted:
        before = old.get(text)
        new.add(text, before.string if before is not None else "")
    out = io.BytesIO()
    write_po(out, new, width=100, omit_header=True, sort_output=True)
    return out.getvalue()


def main(argv: list[str]) -> int:
    wanted = messages()
    stale = []
    for language in i18n.LANGUAGES:
        path = i18n.LOCALES / language / "LC_MESSAGES" / "portal.po"
        text = updated(language, wanted)
        if path.exists() and path.read_bytes() == text:
            continue
        stale.append(str(path))
        if "--check" not in argv:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text)
    if stale and "--check" in argv:
        print("stale:", *stale)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
