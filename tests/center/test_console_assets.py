"""The console's vendored files match their recorded checksums, and the Russian catalogue
translates every string the pages and templates use (extracted as `pybabel extract` would)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "center" / "web" / "static"
CATALOGUES = {
    "center": ROOT / "center" / "web" / "locale",
    "store_node": ROOT / "store_node" / "locale",
}


def test_vendored_files_match_their_recorded_checksums() -> None:
    table = (STATIC / "VENDORED.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| .*? \| ([0-9.]+) \| `([0-9a-f]{64})` \|", table, re.M)
    assert rows, "VENDORED.md lists no file"
    for name, _version, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert ("htmx.min.js", "2.0.11") in [(n, v) for n, v, _ in rows]


def _extracted(package: str) -> set[str]:
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        ROOT / package, method_map, options_map
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


@pytest.mark.parametrize("package", sorted(CATALOGUES))
def test_the_russian_catalogue_translates_every_string(package: str) -> None:
    used = _extracted(package)
    assert len(used) > 10
    with (CATALOGUES[package] / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        russian = {m.id: m.string for m in read_po(po) if m.id}
    untranslated = sorted(m for m in used if not russian.get(m))
    assert not untranslated, f"missing in the Russian catalogue of {package}: {untranslated}"
    with (CATALOGUES[package] / "en" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        english = {m.id for m in read_po(po) if m.id}
    assert used <= english, f"missing in the English catalogue: {sorted(used - english)}"
    # Placeholders survive translation, or formatting a page would fail.
    for msgid in used:
        assert sorted(re.findall(r"%\((\w+)\)s", msgid)) == sorted(
            re.findall(r"%\((\w+)\)s", str(russian[msgid]))
        ), msgid
