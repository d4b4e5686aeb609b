"""installers/install.sh: usage errors, dry runs, and installs into a temporary root."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLERS = REPO / "installers"
INSTALL_SH = INSTALLERS / "install.sh"


def run_install(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run install.sh with ARGS, capturing its output."""
    return subprocess.run(
        ["bash", str(INSTALL_SH), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def tree(root: Path) -> dict[str, str]:
    """Every path under ROOT mapped to its permission string."""
    return {
        str(path.relative_to(root)): stat.filemode(path.lstat().st_mode)
        for path in sorted(root.rglob("*"))
    }


def test_bash_syntax() -> None:
    result = subprocess.run(
        ["bash", "-n", str(INSTALL_SH)], capture_output=True, text=True, timeout=10
    )

    assert result.returncode == 0, result.stderr
    assert os.access(INSTALL_SH, os.X_OK)


def test_help() -> None:
    result = run_install("--help")

    assert result.returncode == 0
    assert "--tier center|store|pos" in result.stdout
    for option in ("--root", "--dry-run", "--source", "--python", "--no-venv", "--no-start"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "kiosk"], "unknown tier 'kiosk'"),
        (["--tier=kiosk"], "unknown tier 'kiosk'"),
        ([], "--tier is required"),
        (["--dry-run"], "--tier is required"),
        (["--tier"], "option --tier needs a value"),
        (["--tier", "--dry-run"], "option --tier needs a value"),
        (["--tier", "pos", "--frobnicate"], "unknown argument '--frobnicate'"),
        (["--tier", "pos", "--root", "/nonexistent/loyalty-root"], "is not a directory"),
        (["--tier", "pos", "--python", "no-such-python3", "--dry-run"], "not found"),
        (["--tier", "pos", "--source", "/nonexistent", "--dry-run"], "no pyproject.toml"),
    ],
)
def test_bad_usage_exits_2_with_usage(args: list[str], message: str) -> None:
    result = run_install(*args)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Usage: install.sh --tier center|store|pos" in result.stderr
    assert result.stdout == ""


def test_root_other_than_slash_needs_no_venv(tmp_path: Path) -> None:
    result = run_install("--tier", "store", "--root", tmp_path)

    assert result.returncode == 2
    assert "needs --no-venv" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_dry_run_into_root_prints_actions_and_creates_nothing(tier: str, tmp_path: Path) -> None:
    result = run_install("--tier", tier, "--root", tmp_path, "--no-venv", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
    out = result.stdout
    assert "dry run" in out
    assert f"would run: install -d -m 0750 {tmp_path}/var/lib/loyalty/{tier}" in out
    assert (
        f"would run: install -m 0640 {INSTALLERS}/config/{tier}.toml "
        f"{tmp_path}/etc/loyalty/{tier}.toml"
    ) in out
    assert (
        f"would run: install -m 0644 {INSTALLERS}/systemd/loyalty-{tier}.service "
        f"{tmp_path}/etc/systemd/system/loyalty-{tier}.service"
    ) in out
    assert "note: skipped under --root" in out
    assert "useradd --system" in out
    assert "+ " not in out


def test_dry_run_on_host_plans_user_venv_and_systemctl(tmp_path: Path) -> None:
    config = Path("/etc/loyalty/center.toml")
    existed = config.exists()

    result = run_install(
        "--tier", "center", "--dry-run", "--python", sys.executable, "--source", REPO
    )

    assert result.returncode == 0, result.stderr
    assert config.exists() == existed
    out = result.stdout
    assert f"would run: {sys.executable} -m venv /opt/loyalty/venv" in out or (
        "reusing the existing virtualenv" in out
    )
    assert f"would run: /opt/loyalty/venv/bin/python -m pip install --upgrade {REPO}" in out
    assert "would run: install -d -m 0750 -o loyalty -g loyalty /var/lib/loyalty/center" in out
    assert (
        "would run: install -m 0644 "
        f"{INSTALLERS}/systemd/loyalty-center.service /etc/systemd/system/loyalty-center.service"
    ) in out
    assert "would run: systemctl daemon-reload" in out
    assert "would run: systemctl enable --now loyalty-center.service" in out
    assert "+ " not in out


def test_dry_run_no_start_only_enables() -> None:
    result = run_install("--tier", "pos", "--dry-run", "--no-venv", "--no-start")

    assert result.returncode == 0, result.stderr
    assert "would run: systemctl enable loyalty-pos.service" in result.stdout
    assert "--now" not in result.stdout


def test_install_into_root_creates_the_tree(tier: str, tmp_path: Path) -> None:
    result = run_install("--tier", tier, "--root", tmp_path, "--no-venv")

    assert result.returncode == 0, result.stderr
    config = tmp_path / "etc" / "loyalty" / f"{tier}.toml"
    unit = tmp_path / "etc" / "systemd" / "system" / f"loyalty-{tier}.service"
    assert config.read_bytes() == (INSTALLERS / "config" / f"{tier}.toml").read_bytes()
    assert unit.read_bytes() == (INSTALLERS / "systemd" / f"loyalty-{tier}.service").read_bytes()
    modes = tree(tmp_path)
    assert modes[f"etc/loyalty/{tier}.toml"] == "-rw-r-----"
    assert modes[f"etc/systemd/system/loyalty-{tier}.service"] == "-rw-r--r--"
    assert modes[f"var/lib/loyalty/{tier}"] == "drwxr-x---"
    assert modes["opt/loyalty"] == "drwxr-xr-x"
    assert not (tmp_path / "opt" / "loyalty" / "venv").exists()
    # Only this tier's files: nothing for the other tiers, nothing outside these folders.
    assert set(modes) == {
        "etc",
        "etc/loyalty",
        f"etc/loyalty/{tier}.toml",
        "etc/systemd",
        "etc/systemd/system",
        f"etc/systemd/system/loyalty-{tier}.service",
        "opt",
        "opt/loyalty",
        "var",
        "var/lib",
        "var/lib/loyalty",
        f"var/lib/loyalty/{tier}",
    }


def test_second_run_keeps_a_modified_config_and_replaces_the_unit(tmp_path: Path) -> None:
    assert run_install("--tier", "store", "--root", tmp_path, "--no-venv").returncode == 0
    config = tmp_path / "etc" / "loyalty" / "store.toml"
    unit = tmp_path / "etc" / "systemd" / "system" / "loyalty-store.service"
    site_config = config.read_text().replace('store_id = "367"', 'store_id = "12"')
    config.write_text(site_config)
    unit.write_text("[Unit]\nDescription=stale\n")

    result = run_install("--tier", "store", "--root", tmp_path, "--no-venv")

    assert result.returncode == 0, result.stderr
    assert config.read_text() == site_config
    assert f"kept the existing {config}" in result.stdout
    assert unit.read_bytes() == (INSTALLERS / "systemd" / "loyalty-store.service").read_bytes()


def test_tiers_share_one_root(tmp_path: Path) -> None:
    for tier in ("store", "pos"):
        assert run_install("--tier", tier, "--root", tmp_path, "--no-venv").returncode == 0

    assert sorted(p.name for p in (tmp_path / "etc" / "loyalty").iterdir()) == [
        "pos.toml",
        "store.toml",
    ]
    assert sorted(p.name for p in (tmp_path / "var" / "lib" / "loyalty").iterdir()) == [
        "pos",
        "store",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_root_with_known_user_gets_its_numeric_ids(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nloyalty:x:990:991::/:/bin/false\n")
    (etc / "group").write_text("root:x:0:\nloyalty:x:991:\n")

    result = run_install("--tier", "center", "--root", tmp_path, "--no-venv")

    assert result.returncode == 0, result.stderr
    data = (tmp_path / "var" / "lib" / "loyalty" / "center").stat()
    config = (etc / "loyalty" / "center.toml").stat()
    assert (data.st_uid, data.st_gid) == (990, 991)
    assert (config.st_uid, config.st_gid) == (0, 991)
    assert "is unknown under" not in result.stdout


def test_root_without_user_says_what_to_chown(tmp_path: Path) -> None:
    result = run_install("--tier", "pos", "--root", tmp_path, "--no-venv")

    assert result.returncode == 0, result.stderr
    assert "chown -R loyalty:loyalty /var/lib/loyalty/pos" in result.stdout
    assert "systemctl --root=" in result.stdout


def test_host_install_needs_root() -> None:
    command = ["bash", str(INSTALL_SH), "--tier", "pos", "--no-venv"]
    readable: str | None = None
    if os.geteuid() == 0:
        # As root (CI), drop to an unprivileged account to see the refusal for real.
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is not available to drop privileges")
        # The checkout may sit in a folder only root can enter: give nobody a readable copy.
        readable = tempfile.mkdtemp(prefix="loyalty-installers-")
        os.chmod(readable, 0o755)
        copy = Path(readable) / "installers"
        shutil.copytree(INSTALL_SH.parent, copy)
        command = [runuser, "-u", "nobody", "--", "bash", str(copy / INSTALL_SH.name)]
        command += ["--tier", "pos", "--no-venv"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=False, cwd="/"
        )
    finally:
        if readable is not None:
            shutil.rmtree(readable)

    assert result.returncode == 1
    assert "needs root" in result.stderr
