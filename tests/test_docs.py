"""Every route each tier registers and every console subcommand is documented in docs/API.md."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = (ROOT / "docs" / "API.md").read_text()

TIERS = {
    "center": ("center", "center.toml"),
    "store_node": ("store", "store.toml"),
    "pos_agent": ("pos", "pos.toml"),
}


def _config_in(tmp_path: Path, example: str) -> Path:
    text = (ROOT / "installers" / "config" / example).read_text()
    text = re.sub(r'data_dir = ".*"', f'data_dir = "{tmp_path}"', text)
    path = tmp_path / example
    path.write_text(text)
    return path


@pytest.mark.parametrize("package", sorted(TIERS))
def test_every_route_is_documented(package: str, tmp_path: Path) -> None:
    module = importlib.import_module(package)
    config = module.load_config(_config_in(tmp_path, TIERS[package][1]))
    app = module.create_app(config)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert routes, f"{package} registers no routes"
    missing = [
        f"{method} {path}"
        for method, path in sorted(routes)
        if not re.search(rf"\|\s*{method}\s*\|\s*`{re.escape(path)}[`?]", API)
    ]
    assert not missing, f"{package} routes missing from docs/API.md: {missing}"


@pytest.mark.parametrize("command", ["loyalty-center", "loyalty-store", "loyalty-pos"])
def test_every_subcommand_is_documented(command: str) -> None:
    script = Path(sys.executable).with_name(command)
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    braces = re.search(r"\{([a-z,-]+)\}", done.stdout)
    if braces:
        subcommands = braces.group(1).split(",")
    else:
        # argparse lists subparsers with a metavar one per line, indented by four spaces.
        subcommands = re.findall(r"^    ([a-z][a-z-]+)", done.stdout, flags=re.MULTILINE)
    assert {"serve", "check-config"} <= set(subcommands)
    missing = [s for s in subcommands if f"`{command} {s}" not in API]
    assert not missing, f"{command} subcommands missing from docs/API.md: {missing}"
