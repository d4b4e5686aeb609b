"""store.toml loading: defaults, relative paths, every problem listed, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from store_node import ConfigError, load_config
from store_node.config import redacted

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
[store]
store_id = "367"
data_dir = "data"

[center]
url = "http://center.example:8700/"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "store.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.store.node_id == "store-367"
    assert (config.store.listen_host, config.store.listen_port) == ("0.0.0.0", 8710)
    assert config.store.advertise is True
    # Relative paths are relative to the config file's folder.
    assert config.store.data_dir == (tmp_path / "conf" / "data").resolve()
    assert config.db_path == config.store.data_dir / "store.db"
    assert config.center.url == "http://center.example:8700"  # trailing slash dropped
    assert (config.center.batch_size, config.center.interval_s) == (500, 2.0)
    assert (config.center.backoff_initial_s, config.center.backoff_max_s) == (1.0, 60.0)
    assert (config.center.timeout_s, config.center.master_poll_s) == (10.0, 4.0)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[store]
store_id = ""
listen_host = "shop-server"
listen_port = 70000
advertise = "yes"
colour = "blue"

[center]
url = "ftp://center"
batch_size = 0
interval_s = -1
backoff_initial_s = 10
backoff_max_s = 5
timeout_s = "10"

[extra]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    for expected in (
        "[extra]: unknown table",
        "store.colour: unknown key",
        "store.store_id: must not be empty",
        "store.listen_host: expected an IP address",
        "store.listen_port: 70000 is out of range 0..65535",
        "store.data_dir: missing (required)",
        "store.advertise: expected true or false, got 'yes'",
        "center.url: expected http(s)://host[:port], got 'ftp://center'",
        "center.batch_size: 0 is out of range 1..10000",
        "center.interval_s: -1 must be > 0",
        "center.backoff_max_s: 5.0 is less than center.backoff_initial_s 10.0",
        "center.timeout_s: expected a number of seconds, got '10'",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert len(problems) == 12
    assert str(path) in str(caught.value)


def test_missing_tables_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "# nothing\n"))
    assert caught.value.problems == (
        "[store]: missing table",
        "[center]: missing table",
        "store.store_id: missing (required)",
        "store.data_dir: missing (required)",
        "center.url: missing (required)",
    )
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[store\n"))
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.toml")


def test_advertising_needs_a_fixed_port_and_a_short_name(tmp_path: Path) -> None:
    text = MINIMAL.replace('data_dir = "data"', 'data_dir = "data"\nlisten_port = 0')
    with pytest.raises(ConfigError, match=r"store\.listen_port: 0"):
        load_config(_write(tmp_path, text))
    load_config(
        _write(tmp_path, text.replace("listen_port = 0", "listen_port = 0\nadvertise = false"))
    )
    long_id = MINIMAL.replace('store_id = "367"', f'store_id = "367"\nnode_id = "{"n" * 60}"')
    with pytest.raises(ConfigError, match="zeroconf instance name"):
        load_config(_write(tmp_path, long_id))


def test_redacted_hides_the_password_only(tmp_path: Path) -> None:
    text = MINIMAL.replace("http://center.example:8700/", "https://node:s3cret@center:8443")
    shown = redacted(load_config(_write(tmp_path, text)))
    assert shown["center"]["url"] == "https://node:***@center:8443"
    assert "s3cret" not in repr(shown)
    assert shown["store"]["store_id"] == "367"


def test_installed_example_config_loads() -> None:
    example = REPO / "installers" / "config" / "store.toml"
    if not example.exists():
        pytest.skip("installers/config/store.toml is not written yet")
    config = load_config(example)
    assert config.store.store_id
    assert config.center.url.startswith("http")


def test_alert_unsynced_h_defaults_to_a_day_and_is_checked(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, MINIMAL)).center.alert_unsynced_h == 24.0
    good = load_config(_write(tmp_path, MINIMAL + "alert_unsynced_h = 2.5\n"))
    assert good.center.alert_unsynced_h == 2.5
    for bad in ("0", "721", '"soon"'):
        with pytest.raises(ConfigError, match=r"center\.alert_unsynced_h"):
            load_config(_write(tmp_path, MINIMAL + f"alert_unsynced_h = {bad}\n"))


def test_ids_follow_the_shared_identifier_rule(tmp_path: Path) -> None:
    # The same rule as the Center's store ids and the signature's node ids (':' allowed).
    ok = load_config(_write(tmp_path, MINIMAL.replace('"367"', '"367:a"')))
    assert (ok.store.store_id, ok.store.node_id) == ("367:a", "store-367:a")
    bad = MINIMAL.replace('"367"', '"-367"').replace("[store]", '[store]\nnode_id = "n 1"')
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, bad))
    message = str(caught.value)
    assert "store.store_id: expected an id of 1..64 letters" in message and "'-367'" in message
    assert "store.node_id: expected an id of 1..64 letters" in message and "'n 1'" in message
