"""pos.toml: one frozen dataclass tree, loaded once, every problem listed at once."""

from __future__ import annotations

import ipaddress
import ssl
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
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


class ConfigReader:
    """Reads typed values out of a parsed TOML document, collecting every problem at once.

    The same code in every tier (tests/test_service_shell.py); `wording` is the tier's message for
    each kind of problem, a `str.format` template over `where`, `name`, `value`, `type`, `low`,
    `high`, `limit`, `length` and `known`. A method returns None when it recorded a problem, or when
    the key is absent and its default is None.
    """

    REQUIRED: Any = object()
    WORDS = (
        "missing_table",
        "not_table",
        "unknown_key",
        "required",
        "not_string",
        "empty",
        "too_long",
        "not_integer",
        "out_of_range",
        "not_seconds",
        "seconds_out_of_range",
        "not_boolean",
    )

    def __init__(self, wording: Mapping[str, str]) -> None:
        missing = [word for word in self.WORDS if word not in wording]
        if missing:
            raise ValueError(f"wording: no message for {', '.join(missing)}")
        self.wording = wording
        self.problems: list[str] = []

    def _say(self, word: str, **fields: Any) -> None:
        self.problems.append(self.wording[word].format(**fields))

    def table(
        self, doc: Mapping[str, Any], name: str, *, required: bool = False
    ) -> Mapping[str, Any]:
        """The table `name` of `doc`; {} (and a problem unless optional) when absent or not one."""
        raw = doc.get(name)
        if raw is None:
            if required:
                self._say("missing_table", name=name)
            return {}
        if not isinstance(raw, Mapping):
            self._say("not_table", name=name, type=type(raw).__name__)
            return {}
        return raw

    def unknown_keys(self, table: Mapping[str, Any], section: str, known: Iterable[str]) -> None:
        """One problem per key of `table` that is not `known`, in key order."""
        names = sorted(known)
        for key in sorted(set(table) - set(names)):
            self._say("unknown_key", where=f"{section}.{key}", known=", ".join(names))

    def value(
        self, table: Mapping[str, Any], section: str, key: str, default: Any = REQUIRED
    ) -> Any:
        """The raw value, else `default`; a problem (and None) when required and absent."""
        if key in table:
            return table[key]
        if default is ConfigReader.REQUIRED:
            self._say("required", where=f"{section}.{key}")
            return None
        return default

    def string(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        default: Any = REQUIRED,
        *,
        allow_empty: bool = False,
        max_len: int | None = None,
    ) -> str | None:
        """A string; blank is a problem unless `allow_empty`, longer than `max_len` too."""
        value = self.value(table, section, key, default)
        if value is None:
            return None
        where = f"{section}.{key}"
        if not isinstance(value, str):
            self._say("not_string", where=where, value=value, type=type(value).__name__)
            return None
        if not allow_empty and not value.strip():
            self._say("empty", where=where, value=value)
            return None
        if max_len is not None and len(value) > max_len:
            self._say("too_long", where=where, limit=max_len, length=len(value))
            return None
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        default: Any = REQUIRED,
        *,
        low: int,
        high: int,
    ) -> int | None:
        """An integer (not a bool) in low..high."""
        value = self.value(table, section, key, default)
        if value is None:
            return None
        where = f"{section}.{key}"
        if isinstance(value, bool) or not isinstance(value, int):
            self._say("not_integer", where=where, value=value, type=type(value).__name__)
            return None
        if not low <= value <= high:
            self._say("out_of_range", where=where, value=value, low=low, high=high)
            return None
        return value

    def seconds(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        default: Any = REQUIRED,
        *,
        high: float = 86_400.0,
    ) -> float | None:
        """A number of seconds, more than 0 and at most `high`."""
        value = self.value(table, section, key, default)
        if value is None:
            return None
        where = f"{section}.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._say("not_seconds", where=where, value=value, type=type(value).__name__)
            return None
        if not 0 < value <= high:
            self._say("seconds_out_of_range", where=where, value=value, high=high)
            return None
        return float(value)

    def boolean(
        self, table: Mapping[str, Any], section: str, key: str, default: Any = REQUIRED
    ) -> bool | None:
        """true or false."""
        value = self.value(table, section, key, default)
        if value is None:
            return None
        if not isinstance(value, bool):
            where = f"{section}.{key}"
            self._say("not_boolean", where=where, value=value, type=type(value).__name__)
            return None
        return value


_WORDING = {
    "missing_table": "[{name}]: missing section",
    "not_table": "[{name}]: expected a table, got {type}",
    "unknown_key": "{where}: unknown key (known: {known})",
    "required": "{where}: missing (a string is required)",
    "not_string": "{where}: expected a string, got {value!r}",
    "empty": "{where}: must not be empty",
    "too_long": "{where}: at most {limit} characters, got {length}",
    "not_integer": "{where}: expected an integer, got {value!r}",
    "out_of_range": "{where}: {value} is outside {low}..{high}",
    "not_seconds": "{where}: expected a number of seconds, got {value!r}",
    "seconds_out_of_range": "{where}: {value} must be > 0 and <= {high:g}",
    "not_boolean": "{where}: expected true or false, got {value!r}",
}
"""This tier's message for each kind of problem the ConfigReader finds."""

_T = TypeVar("_T")


def _or(value: _T | None, default: _T) -> _T:
    """A value the reader returned, or `default` where it found a problem (then refused)."""
    return default if value is None else value


def _identifier(c: ConfigReader, table: Mapping[str, Any], section: str, key: str) -> str:
    value = c.string(table, section, key)
    if value is not None and (
        len(value) > MAX_ID_LEN or not value.isprintable() or value != value.strip()
    ):
        c.problems.append(
            f"{section}.{key}: {value!r} must be 1..{MAX_ID_LEN} printable characters "
            "without surrounding spaces"
        )
    return value or ""


def _text(c: ConfigReader, table: Mapping[str, Any], section: str, key: str, default: str) -> str:
    return c.string(table, section, key, default, allow_empty=True) or ""


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

    c = ConfigReader(_WORDING)
    known_sections = {"register", "store_node", "printer", "display", "offline"}
    for name in sorted(set(doc) - known_sections):
        c.problems.append(
            f"[{name}]: unknown section "
            "(known: [register], [store_node], [offline], [printer], [display])"
        )

    reg = c.table(doc, "register", required=True)
    c.unknown_keys(reg, "register", _REGISTER_KEYS)
    register_id = _identifier(c, reg, "register", "register_id")
    store_id = _identifier(c, reg, "register", "store_id")
    listen_host = _text(c, reg, "register", "listen_host", "127.0.0.1")
    if isinstance(reg.get("listen_host", ""), str) and not _is_loopback(listen_host):
        c.problems.append(
            f"register.listen_host: {listen_host!r} is not a loopback address; the register API "
            "has no authentication and must listen on 127.0.0.1, ::1 or localhost only"
        )
    listen_port = _or(c.integer(reg, "register", "listen_port", 8720, low=0, high=65535), 8720)
    data_dir_text = c.string(reg, "register", "data_dir") or ""
    data_dir = Path(data_dir_text)
    if not data_dir.is_absolute():
        data_dir = (path.parent / data_dir).resolve()

    node = c.table(doc, "store_node")
    d = _STORE_NODE_DEFAULTS
    c.unknown_keys(node, "store_node", asdict(d))
    url = _text(c, node, "store_node", "url", d.url).strip()
    _check_url(url, c.problems)
    ca_file: Path | None = None
    ca_text = _text(c, node, "store_node", "ca_file", "").strip()
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
        upload_interval_s=_or(
            c.seconds(node, "store_node", "upload_interval_s", d.upload_interval_s),
            d.upload_interval_s,
        ),
        batch_size=_or(
            c.integer(node, "store_node", "batch_size", d.batch_size, low=1, high=10_000),
            d.batch_size,
        ),
        timeout_s=_or(
            c.seconds(node, "store_node", "timeout_s", d.timeout_s, high=600.0), d.timeout_s
        ),
        master_poll_s=_or(
            c.seconds(node, "store_node", "master_poll_s", d.master_poll_s), d.master_poll_s
        ),
        backoff_max_s=_or(
            c.seconds(node, "store_node", "backoff_max_s", d.backoff_max_s), d.backoff_max_s
        ),
        ca_file=ca_file,
    )

    offline_table = c.table(doc, "offline")
    o = OfflineConfig()
    c.unknown_keys(offline_table, "offline", asdict(o))
    spend = c.integer(
        offline_table,
        "offline",
        "max_spend_per_card_minor",
        o.max_spend_per_card_minor,
        low=0,
        high=10**12,
    )
    age = c.seconds(
        offline_table, "offline", "max_replica_age_s", o.max_replica_age_s, high=30 * 86400.0
    )
    reserve = c.seconds(
        offline_table, "offline", "reserve_timeout_s", o.reserve_timeout_s, high=10.0
    )
    lookup = c.seconds(
        offline_table, "offline", "card_lookup_timeout_s", o.card_lookup_timeout_s, high=30.0
    )
    offline = OfflineConfig(
        max_spend_per_card_minor=_or(spend, o.max_spend_per_card_minor),
        max_replica_age_s=_or(age, o.max_replica_age_s),
        reserve_timeout_s=_or(reserve, o.reserve_timeout_s),
        card_lookup_timeout_s=_or(lookup, o.card_lookup_timeout_s),
    )

    printer = _printer(c, c.table(doc, "printer"), "printer" in doc)
    display = _display(c, c.table(doc, "display"), "display" in doc)

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


def _device_uri(c: ConfigReader, table: Mapping[str, Any], section: str) -> str:
    uri = (c.string(table, section, "uri", allow_empty=True) or "").strip()
    if "uri" in table and isinstance(table["uri"], str):
        try:
            parse_uri(uri)
        except DeviceUriError as exc:
            c.problems.append(f"{section}.uri: {exc.problem} (got {uri!r})")
    return uri


def _code_page(c: ConfigReader, table: Mapping[str, Any], section: str) -> str:
    code_page = _text(c, table, section, "code_page", "CP866").strip().upper()
    try:
        codec_for(code_page)
    except CodePageError:
        c.problems.append(f"{section}.code_page: {code_page!r} is not a known code page")
    return code_page


def _choice(
    c: ConfigReader,
    table: Mapping[str, Any],
    section: str,
    key: str,
    default: str,
    choices: tuple[str, ...],
) -> str:
    value = _text(c, table, section, key, default)
    if isinstance(table.get(key, default), str) and value not in choices:
        c.problems.append(f"{section}.{key}: {value!r} must be one of {', '.join(choices)}")
    return value


def _printer(c: ConfigReader, table: Mapping[str, Any], present: bool) -> PrinterConfig | None:
    if not present:
        return None
    known = {f.name for f in fields(PrinterConfig)}
    c.unknown_keys(table, "printer", known)
    uri = _device_uri(c, table, "printer")
    profile = _choice(c, table, "printer", "profile", "default", profile_names())
    slot: int | None = None
    if "code_page_slot" in table:
        slot = _or(c.integer(table, "printer", "code_page_slot", 0, low=0, high=255), 0)
    columns = _or(c.integer(table, "printer", "columns", 48, low=16, high=80), 48)
    query_status = _or(c.boolean(table, "printer", "query_status", False), False)
    return PrinterConfig(
        uri=uri,
        profile=profile,
        code_page=_code_page(c, table, "printer"),
        code_page_slot=slot,
        columns=columns,
        language=_choice(c, table, "printer", "language", "ru", _LANGUAGES),
        query_status=query_status,
    )


def _display(c: ConfigReader, table: Mapping[str, Any], present: bool) -> DisplayConfig | None:
    if not present:
        return None
    known = {f.name for f in fields(DisplayConfig)}
    c.unknown_keys(table, "display", known)
    return DisplayConfig(
        uri=_device_uri(c, table, "display"),
        protocol=_choice(c, table, "display", "protocol", "epson", ("epson", "cd5220")),
        code_page=_code_page(c, table, "display"),
        code_table=_or(c.integer(table, "display", "code_table", 17, low=0, high=255), 17),
        brightness=_or(c.integer(table, "display", "brightness", 4, low=1, high=4), 4),
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
