"""The systemd units: structure, commands, sandboxing, and systemd-analyze's verdict."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLERS = REPO / "installers"
DATA_SECTION = {"center": "center", "store": "store", "pos": "register"}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def unit_path(tier: str) -> Path:
    return INSTALLERS / "systemd" / f"loyalty-{tier}.service"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into section -> key -> values (repeated keys accumulate)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{number}: key outside a section"
        assert "=" in line, f"{path.name}:{number}: not a key=value line: {raw!r}"
        assert not line.endswith("\\"), f"{path.name}:{number}: unexpected continuation"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def words(values: list[str]) -> list[str]:
    """All space-separated items of a list-valued key (e.g. After=a b, After=c)."""
    return [word for value in values for word in value.split()]


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key)
    assert values is not None, f"missing {key}="
    assert len(values) == 1, f"{key}= set {len(values)} times"
    return values[0]


def data_dir(tier: str) -> str:
    config = tomllib.loads((INSTALLERS / "config" / f"{tier}.toml").read_text())
    return str(config[DATA_SECTION[tier]]["data_dir"])


def test_unit_sections_and_commands(tier: str) -> None:
    unit = parse_unit(unit_path(tier))
    service = unit["Service"]
    binary = f"/opt/loyalty/venv/bin/loyalty-{tier}"
    config = f"/etc/loyalty/{tier}.toml"

    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit["Unit"], "Description")
    assert one(service, "Type") == "simple"
    assert one(service, "User") == "loyalty"
    assert one(service, "Group") == "loyalty"
    assert one(service, "ExecStart") == f"{binary} serve --config {config}"
    assert one(service, "ExecStartPre") == f"{binary} check-config --config {config}"
    assert one(service, "Environment") == f"LOYALTY_CONFIG={config}"
    assert one(service, "Restart") == "on-failure"
    assert re.fullmatch(r"\d+s", one(service, "RestartSec"))
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_console_script_is_declared_in_pyproject(tier: str) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    exec_start = one(parse_unit(unit_path(tier))["Service"], "ExecStart")
    script = Path(exec_start.split()[0]).name

    assert script == f"loyalty-{tier}"
    assert script in scripts


def test_state_directory_matches_config_data_dir(tier: str) -> None:
    service = parse_unit(unit_path(tier))["Service"]

    assert one(service, "StateDirectory") == f"loyalty/{tier}"
    assert data_dir(tier) == f"/var/lib/{one(service, 'StateDirectory')}"
    assert words(service["ReadWritePaths"]) == [data_dir(tier)]


def test_waits_for_network_online(tier: str) -> None:
    unit = parse_unit(unit_path(tier))["Unit"]

    assert "network-online.target" in words(unit["After"])
    assert "network-online.target" in words(unit["Wants"])


def test_center_is_ordered_after_postgresql_without_requiring_it() -> None:
    unit = parse_unit(unit_path("center"))["Unit"]

    assert "postgresql.service" in words(unit["After"])
    for hard in ("Requires", "Requisite", "BindsTo", "PartOf", "Wants"):
        assert "postgresql.service" not in words(unit.get(hard, []))


def test_sandboxing(tier: str) -> None:
    service = parse_unit(unit_path(tier))["Service"]

    assert one(service, "ProtectSystem") == "strict"
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
    ):
        assert one(service, key) == "yes", key
    assert one(service, "CapabilityBoundingSet") == ""


def test_network_families_allow_mdns(tier: str) -> None:
    service = parse_unit(unit_path(tier))["Service"]
    families = words(service["RestrictAddressFamilies"])

    assert not any(family.startswith("~") for family in families)
    assert {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"} <= set(families)
    assert "PrivateNetwork" not in service
    assert "IPAddressDeny" not in service


def test_pos_agent_reaches_printer_devices() -> None:
    service = parse_unit(unit_path("pos"))["Service"]

    assert {"dialout", "lp"} <= set(words(service["SupplementaryGroups"]))
    assert service.get("PrivateDevices", ["no"]) == ["no"]
    allowed = {value.split()[0] for value in service["DeviceAllow"]}
    assert {"char-ttyS", "char-ttyUSB", "char-ttyACM", "char-usb"} <= allowed


def test_server_tiers_have_no_devices() -> None:
    for tier in ("center", "store"):
        service = parse_unit(unit_path(tier))["Service"]
        assert one(service, "PrivateDevices") == "yes"
        assert "SupplementaryGroups" not in service


@pytest.fixture
def systemd_analyze() -> str:
    if SYSTEMD_ANALYZE is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed (install systemd to run this check)")
    return SYSTEMD_ANALYZE


def verifiable_copy(tier: str, tmp_path: Path) -> Path:
    """A copy of the unit whose commands point to an existing executable.

    verify fails on an ExecStart= binary that does not exist, and /opt/loyalty/venv only
    exists on an installed host; everything else in the unit is checked as shipped.
    """
    stub = tmp_path / "bin" / f"loyalty-{tier}"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = unit_path(tier).read_text()
    assert text.count(f"/opt/loyalty/venv/bin/loyalty-{tier} ") == 2
    copy = tmp_path / f"loyalty-{tier}.service"
    copy.write_text(text.replace(f"/opt/loyalty/venv/bin/loyalty-{tier} ", f"{stub} "))
    return copy


def analyze(systemd_analyze: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"},
    )


def about(unit: Path, stderr: str) -> list[str]:
    """The diagnostics that concern UNIT (ignoring any about the host's own units)."""
    return [line for line in stderr.splitlines() if unit.name in line or str(unit) in line]


def test_systemd_analyze_verify(tier: str, tmp_path: Path, systemd_analyze: str) -> None:
    copy = verifiable_copy(tier, tmp_path)

    result = analyze(systemd_analyze, "verify", "--man=no", copy)

    assert result.returncode == 0, result.stderr
    assert about(copy, result.stderr) == []


def test_systemd_analyze_verify_catches_mistakes(tmp_path: Path, systemd_analyze: str) -> None:
    # Unknown keys and bad values are only warnings (exit 0), which is why the test
    # above also requires silence about the unit.
    copy = verifiable_copy("store", tmp_path)
    copy.write_text(copy.read_text().replace("PrivateTmp=yes", "PrivateTmpp=yes"))

    result = analyze(systemd_analyze, "verify", "--man=no", copy)

    assert any("PrivateTmpp" in line for line in about(copy, result.stderr)), result.stderr


def test_systemd_analyze_security_rating(tier: str, tmp_path: Path, systemd_analyze: str) -> None:
    copy = verifiable_copy(tier, tmp_path)

    result = analyze(systemd_analyze, "security", "--offline=yes", "--no-pager", copy)
    if result.returncode != 0 and "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {result.stderr}")

    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.5, result.stdout
