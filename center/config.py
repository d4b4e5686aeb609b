"""The Center's config: one frozen dataclass tree loaded from `center.toml` (docs/CONFIG.md)."""

from __future__ import annotations

import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from center.errors import ConfigError

__all__ = [
    "BACKENDS",
    "AuthSettings",
    "CenterSettings",
    "Config",
    "LedgerSettings",
    "MasterSettings",
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
}


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
    problems: list[str] = []
    for section, value in data.items():
        if section not in _KNOWN:
            problems.append(f"[{section}]: unknown section (known: {', '.join(_KNOWN)})")
        elif not isinstance(value, dict):
            problems.append(f"{section}: expected a table, got {type(value).__name__}")
    center = data.get("center", {})
    storage = data.get("storage", {})
    security = data.get("security", {})
    center = center if isinstance(center, dict) else {}
    storage = storage if isinstance(storage, dict) else {}
    security = security if isinstance(security, dict) else {}
    tls = data.get("tls", {})
    tls = tls if isinstance(tls, dict) else {}
    ledger = data.get("ledger", {})
    ledger = ledger if isinstance(ledger, dict) else {}
    auth = data.get("auth", {})
    auth = auth if isinstance(auth, dict) else {}
    token_ttl_days = _integer(auth, "auth", "token_ttl_days", 0, problems, low=0, high=3650)
    for key in auth:
        if key not in _KNOWN["auth"]:
            problems.append(f"auth.{key}: unknown key")
    segments = data.get("segments", {})
    segments = segments if isinstance(segments, dict) else {}
    recalc_interval_s = _integer(
        segments, "segments", "recalc_interval_s", 3600, problems, low=1, high=7 * 86400
    )
    for key in segments:
        if key not in _KNOWN["segments"]:
            problems.append(f"segments.{key}: unknown key")
    master = data.get("master", {})
    master = master if isinstance(master, dict) else {}
    card_scope_days = _integer(master, "master", "card_scope_days", 365, problems, low=1, high=3650)
    delta_max_rows = _integer(
        master, "master", "delta_max_rows", 20000, problems, low=100, high=200000
    )
    checksum_every_s = _integer(
        master, "master", "checksum_every_s", 300, problems, low=0, high=86400
    )
    for key in master:
        if key not in _KNOWN["master"]:
            problems.append(f"master.{key}: unknown key")
    report_table = data.get("reports", {})
    report_table = report_table if isinstance(report_table, dict) else {}
    report_zone = _string(report_table, "reports", "timezone", "UTC", problems) or "UTC"
    if "timezone" in report_table and isinstance(report_table["timezone"], str):
        zone_problem = _zone_problem(report_zone)
        if zone_problem:
            problems.append(f"reports.timezone: {zone_problem}")
    for key in report_table:
        if key not in _KNOWN["reports"]:
            problems.append(f"reports.{key}: unknown key")
    for section, table in (
        ("center", center),
        ("storage", storage),
        ("security", security),
        ("tls", tls),
        ("ledger", ledger),
    ):
        for key in table:
            if key not in _KNOWN[section]:
                problems.append(f"{section}.{key}: unknown key")

    node_id = _string(center, "center", "node_id", "center", problems, max_len=64)
    listen_host = _string(center, "center", "listen_host", "127.0.0.1", problems)
    listen_port = _integer(center, "center", "listen_port", 8700, problems, low=0, high=65535)
    data_dir_raw = _string(center, "center", "data_dir", None, problems)
    backend = _string(storage, "storage", "backend", "sqlite", problems)
    sqlite_path_raw = _string(storage, "storage", "sqlite_path", "center.db", problems)
    dsn = _string(storage, "storage", "dsn", "", problems, allow_empty=True)
    expire_interval_s = _integer(
        ledger, "ledger", "expire_interval_s", 3600, problems, low=1, high=7 * 86400
    )
    require_signatures = security.get("require_signatures", True)
    if not isinstance(require_signatures, bool):
        problems.append(
            "security.require_signatures: expected true or false, "
            f"got {type(require_signatures).__name__}"
        )

    tls_files: dict[str, Path | None] = {}
    for key in ("cert_file", "key_file"):
        raw_file = _string(tls, "tls", key, "", problems, allow_empty=True)
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


def _string(
    table: Mapping[str, Any],
    section: str,
    key: str,
    default: str | None,
    problems: list[str],
    *,
    allow_empty: bool = False,
    max_len: int = 4096,
) -> str | None:
    if key not in table:
        if default is None:
            problems.append(f"{section}.{key}: required")
        return default
    value = table[key]
    if not isinstance(value, str):
        problems.append(f"{section}.{key}: expected a string, got {type(value).__name__}")
        return default
    if not value and not allow_empty:
        problems.append(f"{section}.{key}: must not be empty")
        return default
    if len(value) > max_len:
        problems.append(f"{section}.{key}: at most {max_len} characters, got {len(value)}")
        return default
    return value


def _integer(
    table: Mapping[str, Any],
    section: str,
    key: str,
    default: int,
    problems: list[str],
    *,
    low: int,
    high: int,
) -> int:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{section}.{key}: expected an integer, got {type(value).__name__}")
        return default
    if not low <= value <= high:
        problems.append(f"{section}.{key}: must be between {low} and {high}, got {value}")
        return default
    return value
