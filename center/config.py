"""The Center's config: one frozen dataclass tree loaded from `center.toml` (docs/CONFIG.md)."""

from __future__ import annotations

import re
import ssl
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from center.errors import ConfigError

__all__ = [
    "ANALYTICS_ENGINES",
    "BACKENDS",
    "AnalyticsSettings",
    "AuthSettings",
    "CenterSettings",
    "Config",
    "LedgerSettings",
    "MasterSettings",
    "ModelSettings",
    "MonitoringSettings",
    "SecuritySettings",
    "SegmentSettings",
    "StorageSettings",
    "TlsSettings",
    "effective_config",
    "format_toml",
    "load_config",
    "parse_config",
    "redact_dsn",
]

BACKENDS = ("sqlite", "postgresql")
ANALYTICS_ENGINES = ("chdb", "clickhouse")
REDACTED = "***"


@dataclass(frozen=True, slots=True)
class CenterSettings:
    node_id: str
    listen_host: str
    listen_port: int
    data_dir: Path


@dataclass(frozen=True, slots=True)
class StorageSettings:
    backend: str
    sqlite_path: Path
    dsn: str


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    require_signatures: bool = True
    """Refuse unsigned requests from store nodes (signed ones are always verified)."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    token_ttl_days: int = 0
    """Days a new user token stays valid unless told otherwise; 0 = until revoked."""


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    expire_interval_s: int = 3600
    """How often the Center burns the remainder of expired lots (a scheduled job)."""


@dataclass(frozen=True, slots=True)
class SegmentSettings:
    recalc_interval_s: int = 3600
    """How often the Center recalculates every dynamic segment (a scheduled job)."""


@dataclass(frozen=True, slots=True)
class FraudScanSettings:
    scan_interval_s: int = 900
    """How often the Center runs the fraud detectors (a scheduled job; docs/FRAUD.md)."""
    min_minutes_between_stores: int = 30
    """One card at two different stores closer than this is a fraud signal."""


@dataclass(frozen=True, slots=True)
class VerifySettings:
    enabled: bool = True
    """Verify every sale at ingest (center/ingest/verify.py); off only for a benchmark."""
    feed_lag_s: int = 600
    """A card's sale the Center held this long before another sale's closed_at must be in
    that sale's state basis (the register's store node had it by then)."""
    future_skew_s: int = 300
    """A sale closed later than the Center's now plus this is quarantined."""
    max_age_days: int = 400
    """A sale closed this long before the Center received it is quarantined when its store
    has no enrolled node to date it by (signatures off)."""


@dataclass(frozen=True, slots=True)
class MasterSettings:
    card_scope_days: int = 365
    """A store holds the cards with a sale there within this many days (plus looked-up cards)."""
    delta_max_rows: int = 20000
    """Rows per master-data delta page (a bigger change is served in pages)."""
    checksum_every_s: int = 300
    """A store's deltas carry the full replica checksum at most this often (drift detection)."""


@dataclass(frozen=True, slots=True)
class ReportSettings:
    timezone: str = "UTC"
    """IANA zone of the chain's business day: reports group sales into days of this zone."""


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    engine: str = "chdb"
    """chdb (embedded, a data folder) or clickhouse (a server or cluster at `url`)."""
    path: Path = Path("analytics")
    """chDB's data folder (relative paths from center.data_dir, beside the Center's database)."""
    url: str = ""
    """clickhouse-connect DSN, e.g. http://user:password@host:8123 (engine = clickhouse)."""
    database: str = "loyalty_analytics"
    feed_interval_s: int = 30
    """How often the Center feeds new sales, movements and customers; 0 = not in the app."""


@dataclass(frozen=True, slots=True)
class ModelSettings:
    retrain_every_s: int = 7 * 86400
    """How often the Center retrains the models on the analytics store (a scheduled job,
    skipped while the store has too little history); 0 = never on a schedule."""


@dataclass(frozen=True, slots=True)
class MonitoringSettings:
    store_late_s: int = 120
    """A store node without a heartbeat this long is late on the monitoring page (amber)."""
    store_silent_s: int = 900
    """... and silent (red, an alert) after this long."""
    register_late_s: int = 600
    """A register its store node has not heard from this long is late."""
    register_silent_s: int = 3600
    """... and silent (an alert: "register silent for 1 h") after this long."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: Path | None = None
    """PEM certificate chain; with key_file, `serve` speaks HTTPS only."""
    key_file: Path | None = None

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
    center: CenterSettings
    storage: StorageSettings
    security: SecuritySettings = SecuritySettings()
    tls: TlsSettings = TlsSettings()
    ledger: LedgerSettings = LedgerSettings()
    auth: AuthSettings = AuthSettings()
    segments: SegmentSettings = SegmentSettings()
    master: MasterSettings = MasterSettings()
    reports: ReportSettings = ReportSettings()
    fraud: FraudScanSettings = FraudScanSettings()
    verify: VerifySettings = VerifySettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    models: ModelSettings = ModelSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    source: Path | None = None


_KNOWN: dict[str, tuple[str, ...]] = {
    "center": ("node_id", "listen_host", "listen_port", "data_dir"),
    "storage": ("backend", "sqlite_path", "dsn"),
    "security": ("require_signatures",),
    "tls": ("cert_file", "key_file"),
    "ledger": ("expire_interval_s",),
    "auth": ("token_ttl_days",),
    "segments": ("recalc_interval_s",),
    "master": ("card_scope_days", "delta_max_rows", "checksum_every_s"),
    "reports": ("timezone",),
    "fraud": ("scan_interval_s", "min_minutes_between_stores"),
    "verify": ("enabled", "feed_lag_s", "future_skew_s", "max_age_days"),
    "analytics": ("engine", "path", "url", "database", "feed_interval_s"),
    "models": ("retrain_every_s",),
    "monitoring": ("store_late_s", "store_silent_s", "register_late_s", "register_silent_s"),
}


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


_MAX_TEXT = 4096
_WORDING = {
    "missing_table": "[{name}]: missing table",
    "not_table": "{name}: expected a table, got {type}",
    "unknown_key": "{where}: unknown key",
    "required": "{where}: required",
    "not_string": "{where}: expected a string, got {type}",
    "empty": "{where}: must not be empty",
    "too_long": "{where}: at most {limit} characters, got {length}",
    "not_integer": "{where}: expected an integer, got {type}",
    "out_of_range": "{where}: must be between {low} and {high}, got {value}",
    "not_seconds": "{where}: expected a number of seconds, got {type}",
    "seconds_out_of_range": "{where}: must be between 0 and {high:g} seconds, got {value}",
    "not_boolean": "{where}: expected true or false, got {type}",
}
"""This tier's message for each kind of problem the ConfigReader finds."""


def load_config(path: str | Path) -> Config:
    """Read and validate a center.toml; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror or exc})"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from exc
    return parse_config(data, base_dir=path.resolve().parent, source=path)


def parse_config(data: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths are taken from `base_dir`."""
    reader = ConfigReader(_WORDING)
    problems = reader.problems
    tables: dict[str, Mapping[str, Any]] = {}
    for section in data:
        if section not in _KNOWN:
            problems.append(f"[{section}]: unknown section (known: {', '.join(_KNOWN)})")
        else:
            tables[section] = reader.table(data, section)
    center = tables.get("center", {})
    storage = tables.get("storage", {})
    security = tables.get("security", {})
    tls = tables.get("tls", {})
    ledger = tables.get("ledger", {})
    auth = tables.get("auth", {})
    token_ttl_days = reader.integer(auth, "auth", "token_ttl_days", 0, low=0, high=3650)
    reader.unknown_keys(auth, "auth", _KNOWN["auth"])
    segments = tables.get("segments", {})
    recalc_interval_s = reader.integer(
        segments, "segments", "recalc_interval_s", 3600, low=1, high=7 * 86400
    )
    reader.unknown_keys(segments, "segments", _KNOWN["segments"])
    fraud = tables.get("fraud", {})
    scan_interval_s = reader.integer(fraud, "fraud", "scan_interval_s", 900, low=10, high=86400)
    min_minutes = reader.integer(
        fraud, "fraud", "min_minutes_between_stores", 30, low=1, high=24 * 60
    )
    reader.unknown_keys(fraud, "fraud", _KNOWN["fraud"])
    verify = tables.get("verify", {})
    verify_enabled = reader.boolean(verify, "verify", "enabled", True)
    feed_lag_s = reader.integer(verify, "verify", "feed_lag_s", 600, low=0, high=7 * 86400)
    future_skew_s = reader.integer(verify, "verify", "future_skew_s", 300, low=0, high=86400)
    max_age_days = reader.integer(verify, "verify", "max_age_days", 400, low=1, high=3650)
    reader.unknown_keys(verify, "verify", _KNOWN["verify"])
    master = tables.get("master", {})
    card_scope_days = reader.integer(master, "master", "card_scope_days", 365, low=1, high=3650)
    delta_max_rows = reader.integer(master, "master", "delta_max_rows", 20000, low=100, high=200000)
    checksum_every_s = reader.integer(master, "master", "checksum_every_s", 300, low=0, high=86400)
    reader.unknown_keys(master, "master", _KNOWN["master"])
    report_table = tables.get("reports", {})
    report_zone = (
        reader.string(report_table, "reports", "timezone", "UTC", max_len=_MAX_TEXT) or "UTC"
    )
    if "timezone" in report_table and isinstance(report_table["timezone"], str):
        zone_problem = _zone_problem(report_zone)
        if zone_problem:
            problems.append(f"reports.timezone: {zone_problem}")
    reader.unknown_keys(report_table, "reports", _KNOWN["reports"])
    an_table = tables.get("analytics", {})
    an_engine = reader.string(an_table, "analytics", "engine", "chdb", max_len=32) or "chdb"
    if an_engine not in ANALYTICS_ENGINES:
        problems.append(
            f"analytics.engine: must be one of {', '.join(ANALYTICS_ENGINES)}, got {an_engine!r}"
        )
    an_path = reader.string(an_table, "analytics", "path", "analytics", max_len=_MAX_TEXT)
    an_url = reader.string(an_table, "analytics", "url", "", allow_empty=True, max_len=_MAX_TEXT)
    an_db = reader.string(an_table, "analytics", "database", "loyalty_analytics", max_len=64)
    if an_db and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", an_db):
        problems.append(f"analytics.database: expected letters, digits and _, got {an_db!r}")
    if an_engine == "clickhouse" and not an_url:
        problems.append("analytics.url: required when analytics.engine is 'clickhouse'")
    an_interval = reader.integer(an_table, "analytics", "feed_interval_s", 30, low=0, high=86400)
    reader.unknown_keys(an_table, "analytics", _KNOWN["analytics"])
    models_table = tables.get("models", {})
    retrain_every_s = reader.integer(
        models_table, "models", "retrain_every_s", 7 * 86400, low=0, high=366 * 86400
    )
    reader.unknown_keys(models_table, "models", _KNOWN["models"])
    watch_table = tables.get("monitoring", {})
    watch = {
        key: reader.integer(watch_table, "monitoring", key, default, low=1, high=30 * 86400)
        for key, default in (
            ("store_late_s", 120),
            ("store_silent_s", 900),
            ("register_late_s", 600),
            ("register_silent_s", 3600),
        )
    }
    reader.unknown_keys(watch_table, "monitoring", _KNOWN["monitoring"])
    for role in ("store", "register"):
        late, silent = watch[f"{role}_late_s"], watch[f"{role}_silent_s"]
        if late is not None and silent is not None and late >= silent:
            problems.append(
                f"monitoring.{role}_silent_s: expected more than {role}_late_s ({late}), "
                f"got {silent}"
            )
    for section in ("center", "storage", "security", "tls", "ledger"):
        reader.unknown_keys(tables.get(section, {}), section, _KNOWN[section])

    node_id = reader.string(center, "center", "node_id", "center", max_len=64)
    listen_host = reader.string(center, "center", "listen_host", "127.0.0.1", max_len=_MAX_TEXT)
    listen_port = reader.integer(center, "center", "listen_port", 8700, low=0, high=65535)
    data_dir_raw = reader.string(center, "center", "data_dir", max_len=_MAX_TEXT)
    backend = reader.string(storage, "storage", "backend", "sqlite", max_len=_MAX_TEXT)
    sqlite_path_raw = reader.string(
        storage, "storage", "sqlite_path", "center.db", max_len=_MAX_TEXT
    )
    dsn = reader.string(storage, "storage", "dsn", "", allow_empty=True, max_len=_MAX_TEXT)
    expire_interval_s = reader.integer(
        ledger, "ledger", "expire_interval_s", 3600, low=1, high=7 * 86400
    )
    require_signatures = reader.boolean(security, "security", "require_signatures", True)

    tls_files: dict[str, Path | None] = {}
    for key in ("cert_file", "key_file"):
        raw_file = reader.string(tls, "tls", key, "", allow_empty=True, max_len=_MAX_TEXT)
        tls_files[key] = _resolve(base_dir, raw_file) if raw_file else None
        found = tls_files[key]
        if found is not None and not found.is_file():
            problems.append(f"tls.{key}: {found} is not a readable file")
    if (tls_files["cert_file"] is None) != (tls_files["key_file"] is None):
        problems.append("tls: set both cert_file and key_file, or neither (plain HTTP)")
    if backend and backend not in BACKENDS:
        problems.append(f"storage.backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend in NEEDS_DSN and not dsn:
        problems.append("storage.dsn: required when storage.backend is 'postgresql'")
    if dsn and not _looks_like_dsn(dsn):
        problems.append(
            "storage.dsn: expected postgresql://user:password@host/db or 'key=value ...' "
            f"conninfo, got {redact_dsn(dsn)!r}"
        )
    if problems:
        raise ConfigError(problems)
    assert listen_port is not None and expire_interval_s is not None  # for the type checker
    assert token_ttl_days is not None and recalc_interval_s is not None
    assert card_scope_days is not None and delta_max_rows is not None
    assert checksum_every_s is not None

    data_dir = _resolve(base_dir, data_dir_raw or ".")
    return Config(
        center=CenterSettings(
            node_id=node_id or "center",
            listen_host=listen_host or "127.0.0.1",
            listen_port=listen_port,
            data_dir=data_dir,
        ),
        storage=StorageSettings(
            backend=backend or "sqlite",
            sqlite_path=_resolve(data_dir, sqlite_path_raw or "center.db"),
            dsn=dsn or "",
        ),
        security=SecuritySettings(require_signatures=bool(require_signatures)),
        tls=TlsSettings(cert_file=tls_files["cert_file"], key_file=tls_files["key_file"]),
        ledger=LedgerSettings(expire_interval_s=expire_interval_s),
        auth=AuthSettings(token_ttl_days=token_ttl_days),
        segments=SegmentSettings(recalc_interval_s=recalc_interval_s),
        master=MasterSettings(
            card_scope_days=card_scope_days,
            delta_max_rows=delta_max_rows,
            checksum_every_s=checksum_every_s,
        ),
        reports=ReportSettings(timezone=report_zone),
        fraud=FraudScanSettings(
            scan_interval_s=scan_interval_s or 900,
            min_minutes_between_stores=min_minutes or 30,
        ),
        verify=VerifySettings(
            enabled=bool(verify_enabled),
            feed_lag_s=600 if feed_lag_s is None else feed_lag_s,
            future_skew_s=300 if future_skew_s is None else future_skew_s,
            max_age_days=max_age_days or 400,
        ),
        analytics=AnalyticsSettings(
            engine=an_engine,
            path=_resolve(data_dir, an_path or "analytics"),
            url=an_url or "",
            database=an_db or "loyalty_analytics",
            feed_interval_s=30 if an_interval is None else an_interval,
        ),
        models=ModelSettings(
            retrain_every_s=7 * 86400 if retrain_every_s is None else retrain_every_s
        ),
        monitoring=MonitoringSettings(
            **{key: value for key, value in watch.items() if value is not None}
        ),
        source=source,
    )


def _zone_problem(name: str) -> str:
    """Why `name` is not an IANA time zone this machine knows, or "" when it is one."""
    import zoneinfo

    if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", name) or len(name) > 64:
        return f"expected an IANA time zone name such as 'Europe/Moscow', got {name[:80]!r}"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown IANA time zone {name!r} (e.g. 'Europe/Moscow', 'America/Chicago')"
    return ""


def effective_config(config: Config) -> dict[str, dict[str, Any]]:
    """The config as plain tables with secrets redacted (what `check-config` prints)."""
    return {
        "center": {
            "node_id": config.center.node_id,
            "listen_host": config.center.listen_host,
            "listen_port": config.center.listen_port,
            "data_dir": str(config.center.data_dir),
        },
        "storage": {
            "backend": config.storage.backend,
            "sqlite_path": str(config.storage.sqlite_path),
            "dsn": redact_dsn(config.storage.dsn),
        },
        "security": {"require_signatures": config.security.require_signatures},
        "tls": {
            "cert_file": str(config.tls.cert_file or ""),
            "key_file": str(config.tls.key_file or ""),
        },
        "ledger": {"expire_interval_s": config.ledger.expire_interval_s},
        "auth": {"token_ttl_days": config.auth.token_ttl_days},
        "segments": {"recalc_interval_s": config.segments.recalc_interval_s},
        "master": {
            "card_scope_days": config.master.card_scope_days,
            "delta_max_rows": config.master.delta_max_rows,
            "checksum_every_s": config.master.checksum_every_s,
        },
        "reports": {"timezone": config.reports.timezone},
        "fraud": {
            "scan_interval_s": config.fraud.scan_interval_s,
            "min_minutes_between_stores": config.fraud.min_minutes_between_stores,
        },
        "verify": {
            "enabled": config.verify.enabled,
            "feed_lag_s": config.verify.feed_lag_s,
            "future_skew_s": config.verify.future_skew_s,
            "max_age_days": config.verify.max_age_days,
        },
        "analytics": {
            "engine": config.analytics.engine,
            "path": str(config.analytics.path),
            "url": redact_dsn(config.analytics.url),
            "database": config.analytics.database,
            "feed_interval_s": config.analytics.feed_interval_s,
        },
        "models": {"retrain_every_s": config.models.retrain_every_s},
        "monitoring": {
            "store_late_s": config.monitoring.store_late_s,
            "store_silent_s": config.monitoring.store_silent_s,
            "register_late_s": config.monitoring.register_late_s,
            "register_silent_s": config.monitoring.register_silent_s,
        },
    }


def format_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Render flat tables of str/int/bool values as TOML."""
    out: list[str] = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, int):
                rendered = str(value)
            else:
                escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
                rendered = f'"{escaped}"'
            out.append(f"{key} = {rendered}")
        out.append("")
    return "\n".join(out)


_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


NEEDS_DSN = frozenset({"postgresql"})
"""Backends that connect to a server named by storage.dsn."""


def redact_dsn(dsn: str) -> str:
    """Replace the password of a URL or key=value DSN with ***."""
    if not dsn:
        return dsn
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:{REDACTED}@{hostinfo}"
        query = parts.query
        if query:
            pairs = [
                (k, REDACTED if k.lower() == "password" else v)
                for k, v in parse_qsl(query, keep_blank_values=True)
            ]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + REDACTED, dsn)


def _looks_like_dsn(dsn: str) -> bool:
    if "://" in dsn:
        return urlsplit(dsn).scheme in ("postgresql", "postgres")
    return "=" in dsn


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)
