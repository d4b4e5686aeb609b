"""pos.toml: one frozen dataclass tree, loaded once, every problem listed at once."""

from __future__ import annotations

import ipaddress
import ssl
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pos_agent.errors import ConfigError
from printers import CodePageError, DeviceUriError, codec_for, parse_uri, profile_names
from sync_protocol import MAX_ID_LEN

__all__ = [
    "Config",
    "DisplayConfig",
    "OfflineConfig",
    "PrinterConfig",
    "RegisterConfig",
    "StoreNodeConfig",
    "load_config",
    "redacted",
]


@dataclass(frozen=True, slots=True)
class RegisterConfig:
    """Who this register is and where its local API listens (loopback only)."""

    register_id: str
    store_id: str
    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 8720

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.db"

    @property
    def replica_path(self) -> Path:
        return self.data_dir / "replica.db"


@dataclass(frozen=True, slots=True)
class StoreNodeConfig:
    """How the register reaches its store node; an empty url means zeroconf discovery."""

    url: str = ""
    upload_interval_s: float = 1.0
    batch_size: int = 200
    timeout_s: float = 5.0
    master_poll_s: float = 5.0
    backoff_max_s: float = 30.0
    ca_file: Path | None = None
    """PEM CA bundle trusted for an https store node (its `[tls]`); None = the system CAs."""

    @property
    def verify(self) -> str | bool:
        """The requests `verify=` for every call to the store node: the CA file or True."""
        return str(self.ca_file) if self.ca_file is not None else True


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    """The register's receipt printer ([printer]); absent means nothing is printed."""

    uri: str
    profile: str = "default"
    code_page: str = "CP866"
    code_page_slot: int | None = None
    columns: int = 48
    language: str = "ru"
    query_status: bool = False


@dataclass(frozen=True, slots=True)
class DisplayConfig:
    """The register's customer display ([display]); absent means no display."""

    uri: str
    protocol: str = "epson"
    code_page: str = "CP866"
    code_table: int = 17
    brightness: int = 4
    language: str = "ru"


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    """Bonus spending when the store node cannot be asked ([offline]); accrual always works."""

    max_spend_per_card_minor: int = 0
    """Bonus one card may spend per store day at this register while the store node is
    unreachable (0: no spending offline). Never more than the replica balance minus the
    register's own unconfirmed spends."""
    max_replica_age_s: float = 86400.0
    """Offline spending needs master data synced with the store node at most this long ago."""
    reserve_timeout_s: float = 1.0
    """How long a receipt waits for the store node's reservation before selling offline."""
    card_lookup_timeout_s: float = 4.0
    """How long identifying a card the replica lacks waits for the store node (which may ask
    the Center, up to 3 s); then the card sells as unknown, with accrual only."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole effective configuration of one POS agent."""

    register: RegisterConfig
    store_node: StoreNodeConfig
    printer: PrinterConfig | None = None
    display: DisplayConfig | None = None
    offline: OfflineConfig = OfflineConfig()


_REGISTER_KEYS = {"register_id", "store_id", "listen_host", "listen_port", "data_dir"}
_STORE_NODE_DEFAULTS = StoreNodeConfig()


class _Collector:
    """Reads typed values out of a TOML table, remembering every problem instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def section(self, doc: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
        value = doc.get(name)
        if value is None:
            if required:
                self.problems.append(f"[{name}]: missing section")
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"[{name}]: expected a table, got {type(value).__name__}")
            return {}
        return value

    def unknown(self, table: dict[str, Any], section: str, known: set[str]) -> None:
        for key in sorted(set(table) - known):
            self.problems.append(
                f"{section}.{key}: unknown key (known: {', '.join(sorted(known))})"
            )

    def text(
        self, table: dict[str, Any], section: str, key: str, default: str | None = None
    ) -> str:
        value = table.get(key, default)
        if value is None:
            self.problems.append(f"{section}.{key}: missing (a string is required)")
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{section}.{key}: expected a string, got {value!r}")
            return ""
        return value

    def identifier(self, table: dict[str, Any], section: str, key: str) -> str:
        value = self.text(table, section, key)
        if key in table and isinstance(table[key], str):
            if not value.strip():
                self.problems.append(f"{section}.{key}: must not be empty")
            elif len(value) > MAX_ID_LEN or not value.isprintable() or value != value.strip():
                self.problems.append(
                    f"{section}.{key}: {value!r} must be 1..{MAX_ID_LEN} printable characters "
                    "without surrounding spaces"
                )
        return value

    def integer(
        self, table: dict[str, Any], section: str, key: str, default: int, lo: int, hi: int
    ) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(f"{section}.{key}: expected an integer, got {value!r}")
            return default
        if not lo <= value <= hi:
            self.problems.append(f"{section}.{key}: {value} is outside {lo}..{hi}")
            return default
        return value

    def seconds(
        self, table: dict[str, Any], section: str, key: str, default: float, hi: float = 86400.0
    ) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{section}.{key}: expected a number of seconds, got {value!r}")
            return default
        if not 0 < value <= hi:
            self.problems.append(f"{section}.{key}: {value} must be > 0 and <= {hi:g}")
            return default
        return float(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, problems: list[str]) -> None:
    if url == "":
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(
            f"store_node.url: {redact_url(url)!r} must be empty (zeroconf discovery) "
            "or an http(s)://host[:port] URL"
        )
        return
    try:
        parts.port  # noqa: B018  # evaluating it validates the port
    except ValueError:
        problems.append(f"store_node.url: {redact_url(url)!r} has an invalid port")


def _is_pem_ca(path: Path) -> bool:
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        return False
    return True


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def load_config(path: str | Path) -> Config:
    """Read and validate pos.toml; raise ConfigError listing every problem found."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from exc

    c = _Collector()
    known_sections = {"register", "store_node", "printer", "display", "offline"}
    for name in sorted(set(doc) - known_sections):
        c.problems.append(
            f"[{name}]: unknown section "
            "(known: [register], [store_node], [offline], [printer], [display])"
        )

    reg = c.section(doc, "register", required=True)
    c.unknown(reg, "register", _REGISTER_KEYS)
    register_id = c.identifier(reg, "register", "register_id")
    store_id = c.identifier(reg, "register", "store_id")
    listen_host = c.text(reg, "register", "listen_host", "127.0.0.1")
    if isinstance(reg.get("listen_host", ""), str) and not _is_loopback(listen_host):
        c.problems.append(
            f"register.listen_host: {listen_host!r} is not a loopback address; the register API "
            "has no authentication and must listen on 127.0.0.1, ::1 or localhost only"
        )
    listen_port = c.integer(reg, "register", "listen_port", 8720, 0, 65535)
    data_dir_text = c.text(reg, "register", "data_dir")
    if "data_dir" in reg and isinstance(reg["data_dir"], str) and not data_dir_text.strip():
        c.problems.append("register.data_dir: must not be empty")
    data_dir = Path(data_dir_text)
    if not data_dir.is_absolute():
        data_dir = (path.parent / data_dir).resolve()

    node = c.section(doc, "store_node", required=False)
    d = _STORE_NODE_DEFAULTS
    c.unknown(node, "store_node", set(asdict(d)))
    url = c.text(node, "store_node", "url", d.url).strip()
    _check_url(url, c.problems)
    ca_file: Path | None = None
    ca_text = c.text(node, "store_node", "ca_file", "").strip()
    if ca_text:
        ca_file = Path(ca_text)
        if not ca_file.is_absolute():
            ca_file = (path.parent / ca_file).resolve()
        if not ca_file.is_file():
            c.problems.append(f"store_node.ca_file: {ca_file} is not a readable file")
        elif not _is_pem_ca(ca_file):
            c.problems.append(
                f"store_node.ca_file: {ca_file} holds no PEM certificate a register could trust"
            )
    store_node = StoreNodeConfig(
        url=url.rstrip("/"),
        upload_interval_s=c.seconds(node, "store_node", "upload_interval_s", d.upload_interval_s),
        batch_size=c.integer(node, "store_node", "batch_size", d.batch_size, 1, 10_000),
        timeout_s=c.seconds(node, "store_node", "timeout_s", d.timeout_s, 600.0),
        master_poll_s=c.seconds(node, "store_node", "master_poll_s", d.master_poll_s),
        backoff_max_s=c.seconds(node, "store_node", "backoff_max_s", d.backoff_max_s),
        ca_file=ca_file,
    )

    offline_table = c.section(doc, "offline", required=False)
    o = OfflineConfig()
    c.unknown(offline_table, "offline", set(asdict(o)))
    offline = OfflineConfig(
        max_spend_per_card_minor=c.integer(
            offline_table,
            "offline",
            "max_spend_per_card_minor",
            o.max_spend_per_card_minor,
            0,
            10**12,
        ),
        max_replica_age_s=c.seconds(
            offline_table, "offline", "max_replica_age_s", o.max_replica_age_s, 30 * 86400.0
        ),
        reserve_timeout_s=c.seconds(
            offline_table, "offline", "reserve_timeout_s", o.reserve_timeout_s, 10.0
        ),
        card_lookup_timeout_s=c.seconds(
            offline_table, "offline", "card_lookup_timeout_s", o.card_lookup_timeout_s, 30.0
        ),
    )

    printer = _printer(c, c.section(doc, "printer", required=False), "printer" in doc)
    display = _display(c, c.section(doc, "display", required=False), "display" in doc)

    if c.problems:
        raise ConfigError(path, c.problems)
    register = RegisterConfig(
        register_id=register_id,
        store_id=store_id,
        data_dir=data_dir,
        listen_host=listen_host,
        listen_port=listen_port,
    )
    return Config(
        register=register,
        store_node=store_node,
        printer=printer,
        display=display,
        offline=offline,
    )


_LANGUAGES = ("ru", "en")


def _device_uri(c: _Collector, table: dict[str, Any], section: str) -> str:
    uri = c.text(table, section, "uri").strip()
    if "uri" in table and isinstance(table["uri"], str):
        try:
            parse_uri(uri)
        except DeviceUriError as exc:
            c.problems.append(f"{section}.uri: {exc.problem} (got {uri!r})")
    return uri


def _code_page(c: _Collector, table: dict[str, Any], section: str) -> str:
    code_page = c.text(table, section, "code_page", "CP866").strip().upper()
    try:
        codec_for(code_page)
    except CodePageError:
        c.problems.append(f"{section}.code_page: {code_page!r} is not a known code page")
    return code_page


def _choice(
    c: _Collector,
    table: dict[str, Any],
    section: str,
    key: str,
    default: str,
    choices: tuple[str, ...],
) -> str:
    value = c.text(table, section, key, default)
    if isinstance(table.get(key, default), str) and value not in choices:
        c.problems.append(f"{section}.{key}: {value!r} must be one of {', '.join(choices)}")
    return value


def _printer(c: _Collector, table: dict[str, Any], present: bool) -> PrinterConfig | None:
    if not present:
        return None
    known = {f.name for f in fields(PrinterConfig)}
    c.unknown(table, "printer", known)
    uri = _device_uri(c, table, "printer")
    profile = _choice(c, table, "printer", "profile", "default", profile_names())
    slot: int | None = None
    if "code_page_slot" in table:
        slot = c.integer(table, "printer", "code_page_slot", 0, 0, 255)
    columns = c.integer(table, "printer", "columns", 48, 16, 80)
    query_status = table.get("query_status", False)
    if not isinstance(query_status, bool):
        c.problems.append(f"printer.query_status: expected true or false, got {query_status!r}")
        query_status = False
    return PrinterConfig(
        uri=uri,
        profile=profile,
        code_page=_code_page(c, table, "printer"),
        code_page_slot=slot,
        columns=columns,
        language=_choice(c, table, "printer", "language", "ru", _LANGUAGES),
        query_status=query_status,
    )


def _display(c: _Collector, table: dict[str, Any], present: bool) -> DisplayConfig | None:
    if not present:
        return None
    known = {f.name for f in fields(DisplayConfig)}
    c.unknown(table, "display", known)
    return DisplayConfig(
        uri=_device_uri(c, table, "display"),
        protocol=_choice(c, table, "display", "protocol", "epson", ("epson", "cd5220")),
        code_page=_code_page(c, table, "display"),
        code_table=c.integer(table, "display", "code_table", 17, 0, 255),
        brightness=c.integer(table, "display", "brightness", 4, 1, 4),
        language=_choice(c, table, "display", "language", "ru", _LANGUAGES),
    )


def redacted(config: Config) -> dict[str, dict[str, Any]]:
    """The effective config as plain data for `check-config`, secrets redacted."""
    register = asdict(config.register)
    register["data_dir"] = str(config.register.data_dir)
    store_node = asdict(config.store_node)
    store_node["url"] = redact_url(config.store_node.url)
    store_node["ca_file"] = str(config.store_node.ca_file or "")
    out: dict[str, dict[str, Any]] = {
        "register": register,
        "store_node": store_node,
        "offline": asdict(config.offline),
    }
    if config.printer is not None:
        out["printer"] = asdict(config.printer)
    if config.display is not None:
        out["display"] = asdict(config.display)
    return out
