"""[printer] and [display] in pos.toml: optional, validated, every problem listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pos_agent.cli import main
from pos_agent.config import DisplayConfig, PrinterConfig, load_config
from pos_agent.errors import ConfigError

BASE = '[register]\nregister_id = "367-1"\nstore_id = "367"\ndata_dir = "data"\n'


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "pos.toml"
    path.write_text(BASE + extra)
    return path


def test_devices_are_optional(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))

    assert config.printer is None and config.display is None


def test_printer_and_display_with_defaults(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            '[printer]\nuri = "tcp://192.168.1.50:9100"\n'
            '[display]\nuri = "serial:///dev/ttyUSB0?baudrate=9600"\n',
        )
    )

    assert config.printer == PrinterConfig(uri="tcp://192.168.1.50:9100")
    assert config.printer.code_page == "CP866" and config.printer.columns == 48
    assert config.display == DisplayConfig(uri="serial:///dev/ttyUSB0?baudrate=9600")
    assert config.display.protocol == "epson" and config.display.code_table == 17


def test_every_device_problem_is_listed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[printer]\nuri = "lpt://x"\nprofile = "TM-X9000"\ncode_page = "CP9999"\n'
        'columns = 8\ncode_page_slot = 300\nlanguage = "de"\ncolour = "red"\n'
        '[display]\nuri = "serial:///dev/ttyS0?baudrate=1234"\nprotocol = "ncr"\n'
        "code_table = -1\nbrightness = 9\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    problems = "\n".join(caught.value.problems)
    for expected in (
        "printer.uri: scheme",
        "printer.profile: 'TM-X9000'",
        "printer.code_page: 'CP9999'",
        "printer.columns: 8",
        "printer.code_page_slot: 300",
        "printer.language: 'de'",
        "printer.colour: unknown key",
        "display.uri: baudrate=1234",
        "display.protocol: 'ncr'",
        "display.code_table: -1",
        "display.brightness: 9",
    ):
        assert expected in problems


def test_check_config_prints_the_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        '[printer]\nuri = "file:///tmp/receipts.bin"\nprofile = "TM-T20II"\ncolumns = 42\n'
        '[display]\nuri = "dummy://"\nprotocol = "cd5220"\ncode_table = 7\n',
    )
    assert main(["check-config", "--config", str(path)]) == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["printer"]["profile"] == "TM-T20II" and shown["printer"]["columns"] == 42
    assert shown["display"] == {
        "uri": "dummy://",
        "protocol": "cd5220",
        "code_page": "CP866",
        "code_table": 7,
        "brightness": 4,
        "language": "ru",
    }


def test_the_documented_device_block_loads(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text()
    block = re.search(r"### pos\.toml: printer and customer display.*?```toml\n(.*?)```", doc, re.S)
    assert block is not None

    config = load_config(_write(tmp_path, block.group(1)))

    assert config.printer is not None and config.printer.uri == "tcp://192.168.1.50:9100"
    assert config.display is not None and config.display.protocol == "epson"
