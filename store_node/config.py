"""The store node's configuration: one frozen dataclass tree loaded from store.toml."""

from __future__ import annotations

import ipaddress
import ssl
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from store_node.errors import ConfigError
from sync_protocol import InvalidIdentifier, check_identifier

__all__ = [
    "CenterSettings",
    "Config",
    "ReservationSettings",
    "SecuritySettings",
    "StoreSettings",
    "TlsSettings",
    "load_config",
    "parse_config",
    "redacted",
]

_DNS_LABEL_MAX = 63


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The `[store]` table: who this node is and where it listens and keeps its data."""

    store_id: str
    node_id: str
    listen_host: str
    listen_port: int
    data_dir: Path
    advertise: bool = True


@dataclass(frozen=True, slots=True)
class CenterSettings:
    """The `[center]` table: where sales go and how often/patiently they are sent."""

    url: str
    batch_size: int = 500
    interval_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0
    master_poll_s: float = 4.0
    alert_unsynced_h: float = 24.0
    ca_file: Path | None = None
    """PEM CA bundle that signed the Center's certificate (https only); None = system CAs."""

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client SSL context for an https Center; None for http."""
        if not self.url.startswith("https://"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The `[security]` table: whether registers must sign their requests."""

    require_signatures: bool = True


@dataclass(frozen=True, slots=True)
class ReservationSettings:
    """The `[reservations]` table: how long a register's hold on bonus and coupons lasts."""

    ttl_s: float = 300.0
    """A hold not committed or released within this many seconds gives its points back."""
    center_timeout_s: float = 1.0
    """How long a reservation waits for the Center's word on a single-use coupon code."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The `[tls]` table: the certificate registers see; both files or neither (plain HTTP)."""

    cert_file: Path | None = None
    """PEM certificate chain; with key_file, `serve` speaks HTTPS only."""
    key_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    def server_context(self) -> ssl.SSLContext | None:
        """The server SSL context, or None for plain HTTP."""
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True, slots=True)
class Config:
    """The whole store node configuration; `source` is the file it came from, if any."""

    store: StoreSettings
    center: CenterSettings
    security: SecuritySettings = SecuritySettings()
    source: Path | None = None
    reservations: ReservationSettings = ReservationSettings()
    tls: TlsSettings = TlsSettings()

    @property
    def db_path(self) -> Path:
        """The SQLite file holding sales, registers and the master-data cache."""
        return self.store.data_dir / "store.db"


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
    "missing_table": "[{name}]: missing table",
    "not_table": "[{name}]: expected a table, got {type}",
    "unknown_key": "{where}: unknown key (known: {known})",
    "required": "{where}: missing (required)",
    "not_string": "{where}: expected a string, got {value!r}",
    "empty": "{where}: must not be empty",
    "too_long": "{where}: at most {limit} characters, got {length}",
    "not_integer": "{where}: expected an integer, got {value!r}",
    "out_of_range": "{where}: {value} is out of range {low}..{high}",
    "not_seconds": "{where}: expected a number of seconds, got {value!r}",
    "seconds_out_of_range": "{where}: {value} must be > 0 and at most {high:g} seconds",
    "not_boolean": "{where}: expected true or false, got {value!r}",
}
"""This tier's message for each kind of problem the ConfigReader finds."""


def _identifier(
    reader: ConfigReader,
    table: Mapping[str, Any],
    section: str,
    key: str,
    default: Any = ConfigReader.REQUIRED,
) -> str | None:
    value = reader.string(table, section, key, default)
    if value is None:
        return None
    try:
        return check_identifier(value, f"{section}.{key}")
    except InvalidIdentifier as exc:
        reader.problems.append(str(exc))
        return None


def _center_url(reader: ConfigReader, table: Mapping[str, Any]) -> str | None:
    url = reader.string(table, "center", "url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problems.append(f"center.url: expected http(s)://host[:port], got {url!r}")
        return None
    try:
        _ = parts.port
    except ValueError:
        reader.problems.append(f"center.url: bad port in {url!r}")
        return None
    if parts.query or parts.fragment:
        reader.problems.append(f"center.url: must not have a query or fragment, got {url!r}")
        return None
    return url.rstrip("/")


def _listen_host(reader: ConfigReader, table: Mapping[str, Any]) -> str | None:
    host = reader.string(table, "store", "listen_host", "0.0.0.0")
    if host is None:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        reader.problems.append(
            f"store.listen_host: expected an IP address such as 0.0.0.0 or 127.0.0.1, got {host!r}"
        )
        return None
    return host


def parse_config(doc: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    reader = ConfigReader(_WORDING)
    for name in sorted(set(doc) - {"store", "center", "security", "reservations", "tls"}):
        reader.problems.append(
            f"[{name}]: unknown table (known: center, reservations, security, store, tls)"
        )
    store = reader.table(doc, "store", required=True)
    reader.unknown_keys(
        store,
        "store",
        ("store_id", "node_id", "listen_host", "listen_port", "data_dir", "advertise"),
    )
    center = reader.table(doc, "center", required=True)
    reader.unknown_keys(
        center,
        "center",
        (
            "url",
            "batch_size",
            "interval_s",
            "backoff_initial_s",
            "backoff_max_s",
            "timeout_s",
            "master_poll_s",
            "alert_unsynced_h",
            "ca_file",
        ),
    )
    store_id = _identifier(reader, store, "store", "store_id")
    node_id = _identifier(
        reader, store, "store", "node_id", f"store-{store_id}" if store_id else None
    )
    listen_host = _listen_host(reader, store)
    listen_port = reader.integer(store, "store", "listen_port", 8710, low=0, high=65535)
    data_dir_raw = reader.string(store, "store", "data_dir")
    advertise = reader.boolean(store, "store", "advertise", True)
    url = _center_url(reader, center)
    batch_size = reader.integer(center, "center", "batch_size", 500, low=1, high=10_000)
    interval_s = reader.seconds(center, "center", "interval_s", 2.0)
    backoff_initial_s = reader.seconds(center, "center", "backoff_initial_s", 1.0)
    backoff_max_s = reader.seconds(center, "center", "backoff_max_s", 60.0)
    timeout_s = reader.seconds(center, "center", "timeout_s", 10.0)
    master_poll_s = reader.seconds(center, "center", "master_poll_s", 4.0)
    alert_unsynced_h = _hours(reader, center, "center", "alert_unsynced_h", 24.0)
    ca_raw = reader.value(center, "center", "ca_file", "")
    ca_file: Path | None = None
    if not isinstance(ca_raw, str):
        reader.problems.append(f"center.ca_file: expected a path string, got {ca_raw!r}")
    elif ca_raw:
        ca_file = (base_dir / ca_raw).resolve()
        if not ca_file.is_file():
            reader.problems.append(f"center.ca_file: {ca_file} is not a readable file")
    security = reader.table(doc, "security")
    reader.unknown_keys(security, "security", ("require_signatures",))
    require_signatures = reader.boolean(security, "security", "require_signatures", True)
    reservations = _reservations(reader, reader.table(doc, "reservations"))
    tls = _tls(reader, reader.table(doc, "tls"), base_dir)

    if backoff_initial_s and backoff_max_s and backoff_max_s < backoff_initial_s:
        reader.problems.append(
            f"center.backoff_max_s: {backoff_max_s} is less than "
            f"center.backoff_initial_s {backoff_initial_s}"
        )
    if advertise and listen_port == 0:
        reader.problems.append(
            "store.listen_port: 0 (any free port) cannot be advertised over zeroconf; "
            "set a port or advertise = false"
        )
    if advertise and store_id and node_id:
        instance = f"store-{store_id}-{node_id}"
        if len(instance.encode()) > _DNS_LABEL_MAX:
            reader.problems.append(
                f"store.node_id: zeroconf instance name {instance!r} is longer than "
                f"{_DNS_LABEL_MAX} bytes; shorten store_id/node_id or set advertise = false"
            )
    if reader.problems:
        raise ConfigError(source or "<config>", reader.problems)

    assert store_id and node_id and listen_host and data_dir_raw and url  # for the type checker
    assert listen_port is not None and advertise is not None and batch_size is not None
    assert interval_s and backoff_initial_s and backoff_max_s and timeout_s and master_poll_s
    assert alert_unsynced_h
    return Config(
        store=StoreSettings(
            store_id=store_id,
            node_id=node_id,
            listen_host=listen_host,
            listen_port=listen_port,
            data_dir=(base_dir / data_dir_raw).resolve(),
            advertise=advertise,
        ),
        center=CenterSettings(
            url=url,
            batch_size=batch_size,
            interval_s=interval_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            timeout_s=timeout_s,
            master_poll_s=master_poll_s,
            alert_unsynced_h=alert_unsynced_h,
            ca_file=ca_file,
        ),
        security=SecuritySettings(require_signatures=bool(require_signatures)),
        source=source,
        reservations=reservations,
        tls=tls,
    )


def _tls(reader: ConfigReader, table: Mapping[str, Any], base_dir: Path) -> TlsSettings:
    reader.unknown_keys(table, "tls", ("cert_file", "key_file"))
    files: dict[str, Path | None] = {}
    for key in ("cert_file", "key_file"):
        raw = table.get(key, "")
        files[key] = None
        if not isinstance(raw, str):
            reader.problems.append(f"tls.{key}: expected a path string, got {raw!r}")
        elif raw:
            found = (base_dir / raw).resolve()
            files[key] = found
            if not found.is_file():
                reader.problems.append(f"tls.{key}: {found} is not a readable file")
    if (files["cert_file"] is None) != (files["key_file"] is None):
        reader.problems.append("tls: set both cert_file and key_file, or neither (plain HTTP)")
    settings = TlsSettings(cert_file=files["cert_file"], key_file=files["key_file"])
    if settings.enabled and all(path.is_file() for path in files.values() if path is not None):
        try:
            settings.server_context()
        except (ssl.SSLError, OSError) as exc:
            reader.problems.append(
                f"tls.cert_file/tls.key_file: {settings.cert_file} and {settings.key_file} "
                f"are not a PEM certificate chain and its private key ({exc})"
            )
    return settings


def _reservations(reader: ConfigReader, table: Mapping[str, Any]) -> ReservationSettings:
    default = ReservationSettings()
    reader.unknown_keys(table, "reservations", ("ttl_s", "center_timeout_s"))
    ttl_s = reader.seconds(table, "reservations", "ttl_s", default.ttl_s)
    center_timeout_s = reader.seconds(
        table, "reservations", "center_timeout_s", default.center_timeout_s
    )
    return ReservationSettings(
        ttl_s=ttl_s or default.ttl_s,
        center_timeout_s=center_timeout_s or default.center_timeout_s,
    )


def _hours(
    reader: ConfigReader, table: Mapping[str, Any], section: str, key: str, default: float
) -> float | None:
    where = f"{section}.{key}"
    value = reader.value(table, section, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        reader.problems.append(f"{where}: expected a number of hours, got {value!r}")
        return None
    # Sales are kept while the Center is away; alerting later than a month is never wanted.
    if not 0 < value <= 720:
        reader.problems.append(f"{where}: {value} must be > 0 and at most 720 hours")
        return None
    return float(value)


def load_config(path: str | Path) -> Config:
    """Load and validate store.toml; raise ConfigError listing every problem found."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text: {exc}"]) from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from exc
    return parse_config(doc, base_dir=path.resolve().parent, source=path.resolve())


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as plain data, with any password in the Center URL masked."""
    return {
        "source": str(config.source) if config.source else None,
        "store": {
            "store_id": config.store.store_id,
            "node_id": config.store.node_id,
            "listen_host": config.store.listen_host,
            "listen_port": config.store.listen_port,
            "data_dir": str(config.store.data_dir),
            "advertise": config.store.advertise,
        },
        "center": {
            "url": _redact_url(config.center.url),
            "batch_size": config.center.batch_size,
            "interval_s": config.center.interval_s,
            "backoff_initial_s": config.center.backoff_initial_s,
            "backoff_max_s": config.center.backoff_max_s,
            "timeout_s": config.center.timeout_s,
            "master_poll_s": config.center.master_poll_s,
            "alert_unsynced_h": config.center.alert_unsynced_h,
            "ca_file": str(config.center.ca_file or ""),
        },
        "security": {"require_signatures": config.security.require_signatures},
        "reservations": {
            "ttl_s": config.reservations.ttl_s,
            "center_timeout_s": config.reservations.center_timeout_s,
        },
        "tls": {
            "cert_file": str(config.tls.cert_file or ""),
            "key_file": str(config.tls.key_file or ""),
        },
    }
