"""center.toml loading, validation of every problem at once, redaction, check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from center.cli import main
from center.config import (
    effective_config,
    format_toml,
    load_config,
    redact_dsn,
)
from center.errors import ConfigError
from tests.center.center_factories import write_config

REPO = Path(__file__).resolve().parents[2]


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "center.toml"
    path.write_text('[center]\ndata_dir = "state"\n')
    config = load_config(path)
    assert config.center.node_id == "center"
    assert (config.center.listen_host, config.center.listen_port) == ("127.0.0.1", 8700)
    assert config.center.data_dir == tmp_path / "state"
    assert config.storage.backend == "sqlite"
    assert config.storage.sqlite_path == tmp_path / "state" / "center.db"
    assert config.storage.dsn == ""


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "center.toml"
    path.write_text(
        f'[center]\ndata_dir = "{tmp_path}/abs"\n[storage]\nsqlite_path = "/srv/c.db"\n'
    )
    config = load_config(path)
    assert config.center.data_dir == tmp_path / "abs"
    assert config.storage.sqlite_path == Path("/srv/c.db")


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "center.toml"
    path.write_text(
        "[center]\n"
        "node_id = 7\n"
        'listen_port = "80"\n'
        "colour = 1\n"
        "[storage]\n"
        'backend = "oracle"\n'
        "[extra]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert "center.node_id: expected a string, got int" in problems
    assert "center.listen_port: expected an integer, got str" in problems
    assert "center.colour: unknown key" in problems
    assert "center.data_dir: required" in problems
    assert any(p.startswith("storage.backend: must be one of sqlite, postgresql") for p in problems)
    assert any(p.startswith("[extra]: unknown section") for p in problems)
    assert len(problems) == 6


def test_postgresql_requires_a_dsn(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, backend="postgresql"))
    assert caught.value.problems == ("storage.dsn: required when storage.backend is 'postgresql'",)
    config = load_config(
        write_config(tmp_path, backend="postgresql", dsn="postgresql://u:pw@db/center")
    )
    assert config.storage.backend == "postgresql"


def test_port_range_and_bad_dsn(tmp_path: Path) -> None:
    path = write_config(tmp_path, port=70000, dsn="mysql://u:hunter2@h/db")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "center.listen_port: must be between 0 and 65535, got 70000" in text
    assert "storage.dsn: expected postgresql://" in text
    assert "hunter2" not in text


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[center\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        ("postgresql://center:s3cret@db:5432/center", "postgresql://center:***@db:5432/center"),
        ("postgresql://center@db/center", "postgresql://center@db/center"),
        (
            "postgresql://db/center?user=c&password=s3cret&sslmode=require",
            "postgresql://db/center?user=c&password=***&sslmode=require",
        ),
        (
            "host=db user=center password=s3cret dbname=c",
            "host=db user=center password=*** dbname=c",
        ),
        ("host=db password='s3 cret' dbname=c", "host=db password=*** dbname=c"),
        ("", ""),
    ],
)
def test_redact_dsn(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


def test_check_config_prints_redacted_effective_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, backend="postgresql", dsn="postgresql://center:s3cret@db/center")
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert 'dsn = "postgresql://center:***@db/center"' in out
    assert 'backend = "postgresql"' in out
    assert "listen_port = 0" in out
    assert out == format_toml(effective_config(load_config(path)))


def test_check_config_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "center.toml"
    path.write_text('[center]\nlisten_port = -1\n[storage]\nbackend = "postgresql"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "center.listen_port: must be between 0 and 65535, got -1" in err
    assert "center.data_dir: required" in err
    assert "storage.dsn: required when storage.backend is 'postgresql'" in err


def test_config_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOYALTY_CONFIG", str(write_config(tmp_path)))
    assert main(["check-config"]) == 0
    assert 'node_id = "center-test"' in capsys.readouterr().out
    monkeypatch.delenv("LOYALTY_CONFIG")
    assert main(["check-config"]) == 2
    assert "--config is required" in capsys.readouterr().err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "check-config", "import-dataset"):
        assert command in out


def test_installed_example_config_loads() -> None:
    example = REPO / "installers" / "config" / "center.toml"
    if not example.exists():
        pytest.skip(f"{example} not written yet")
    config = load_config(example)
    assert config.storage.backend in ("sqlite", "postgresql")
    assert config.center.listen_port > 0
