"""Code pages: the Python codec and the ESC t slot, chosen explicitly (never guessed)."""

from __future__ import annotations

import codecs
from collections.abc import Mapping

from printers.errors import CodePageError

__all__ = ["EPSON_SLOTS", "codec_for", "encode_text", "resolve_slot"]

# ESC t n numbers of the Epson ESC/POS reference, used when a profile does not list the page.
EPSON_SLOTS: Mapping[str, int] = {
    "CP437": 0,
    "CP850": 2,
    "CP860": 3,
    "CP863": 4,
    "CP865": 5,
    "CP1252": 16,
    "CP866": 17,
    "CP852": 18,
    "CP858": 19,
    "CP855": 34,
    "CP1251": 46,
}


def codec_for(code_page: str) -> str:
    """The Python codec name of a code page such as 'CP866' (CodePageError if unknown)."""
    name = code_page.strip().upper()
    try:
        return codecs.lookup(name.lower()).name
    except LookupError as exc:
        raise CodePageError(f"code page {code_page!r} has no Python codec") from exc


def resolve_slot(code_page: str, profile_pages: Mapping[str, str] | None = None) -> int:
    """The ESC t slot of a code page: the profile's LOWEST slot for it, else Epson's number.

    python-escpos 3.1 inverts the profile's slot->name table, so when a profile lists a page
    twice (POS-5890: 17 and 59 are both CP866) it uses the last slot; cheap printers answer to
    the standard one.
    """
    name = code_page.strip().upper()
    slots = sorted(int(slot) for slot, page in (profile_pages or {}).items() if page == name)
    if slots:
        return slots[0]
    if name in EPSON_SLOTS:
        return EPSON_SLOTS[name]
    raise CodePageError(
        f"code page {code_page!r}: the printer profile has no slot for it and it is not in the "
        f"Epson table ({', '.join(sorted(EPSON_SLOTS))}); set code_page_slot explicitly"
    )


def encode_text(text: str, code_page: str) -> bytes:
    """The text in the code page; characters it lacks become '?' (a slip must still print)."""
    return text.encode(codec_for(code_page), errors="replace")
