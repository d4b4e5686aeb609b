"""The example configs are exactly the documented ones (docs/CONFIG.md)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INSTALLERS = REPO / "installers"


def documented_configs() -> dict[str, dict[str, Any]]:
    """The TOML block under each '## <name>.toml' heading of docs/CONFIG.md, parsed."""
    text = (REPO / "docs" / "CONFIG.md").read_text()
    blocks = re.findall(r"^## (\w+)\.toml\s*\n```toml\n(.*?)^```", text, re.M | re.S)
    return {name: tomllib.loads(body) for name, body in blocks}


def key_paths(doc: dict[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key path in a parsed TOML document."""
    paths: set[str] = set()
    for key, value in doc.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict):
            paths |= key_paths(value, f"{path}.")
    return paths


def test_config_md_documents_every_tier() -> None:
    assert set(documented_configs()) == {"center", "store", "pos"}


def test_example_has_exactly_the_documented_keys(tier: str) -> None:
    example = tomllib.loads((INSTALLERS / "config" / f"{tier}.toml").read_text())
    documented = documented_configs()[tier]

    assert key_paths(example) == key_paths(documented)
    assert example == documented


def test_example_data_dir_is_under_var_lib_loyalty(tier: str) -> None:
    example = tomllib.loads((INSTALLERS / "config" / f"{tier}.toml").read_text())
    section = {"center": "center", "store": "store", "pos": "register"}[tier]

    assert example[section]["data_dir"] == f"/var/lib/loyalty/{tier}"
