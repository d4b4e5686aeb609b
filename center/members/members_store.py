"""Member accounts: sign-in codes, token families, rate-limit events, and what a customer sees of
their own data, over the shared Database (m033_member_accounts).

Every method takes the customer id from an authenticated member token, never from the request:
a member reaches only their own customer. Every action writes an `audit` row (kind `member`,
actor `member:<customer_id>`) in its own transaction.
"""

from __future__ import annotations

import json
import math
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from center.access.audit import AuditLog
from center.communications.model import Consent
from center.communications.store import CommunicationsRepository, NewMessage
from center.crm.model import new_card_no, search_keys
from center.errors import (
    Conflict,
    InvalidRequest,
    MalformedRequest,
    TooManyAttempts,
    Unauthorized,
    UnknownObject,
)
from center.feed.versions import MasterVersions
from center.ledger.store import LedgerRepository
from center.members.model import (
    DEFAULT_POLICY,
    Address,
    MemberPolicy,
    TokenClaims,
    code_hash,
    new_code,
    read_access_token,
    sign_access_token,
    token_digest,
)
from center.storage.database import Database
from center.storage.migrations import Migration
from center.storage.owners import register_cards
from sync_protocol import ECARD_KEY_SETTING, ECARD_STEP_S, decode_sale, ecard_payload

__all__ = ["POSTGRES_MIGRATION", "SQLITE_MIGRATION", "MemberRepository"]

MIGRATION_NAME = "m033_member_accounts"
HISTORY_LIMIT = 200
PROFILE_FIELDS = ("first_name", "last_name", "middle_name", "birth_date")
"""What a member may change of their profile (phone and e-mail are sign-in addresses)."""


def _steps(ts: str, int_: str) -> tuple[str, ...]:
    return (
        """CREATE TABLE member_keys (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        f"""CREATE TABLE member_accounts (
            customer_id TEXT PRIMARY KEY,
            created_at {ts} NOT NULL,
            tokens_valid_after {ts}
        )""",
        f"""CREATE TABLE member_identities (
            address TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            created_at {ts} NOT NULL
        )""",
        "CREATE INDEX member_identities_customer ON member_identities (customer_id)",
        f"""CREATE TABLE member_challenges (
            challenge_id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            attempts {int_} NOT NULL DEFAULT 0,
            created_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            used_at {ts}
        )""",
        "CREATE INDEX member_challenges_address ON member_challenges (address, created_at)",
        f"""CREATE TABLE member_events (
            bucket TEXT NOT NULL,
            at {ts} NOT NULL
        )""",
        "CREATE INDEX member_events_bucket ON member_events (bucket, at)",
        f"""CREATE TABLE member_families (
            family_id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            created_at {ts} NOT NULL,
            revoked_at {ts},
            reason TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX member_families_customer ON member_families (customer_id)",
        f"""CREATE TABLE member_refresh (
            token_hash TEXT PRIMARY KEY,
            family_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            issued_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            used_at {ts}
        )""",
        f"""CREATE TABLE member_notifications (
            customer_id TEXT NOT NULL,
            notification_id TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at {ts} NOT NULL,
            read_at {ts},
            PRIMARY KEY (customer_id, notification_id)
        )""",
        "CREATE INDEX member_notifications_customer ON member_notifications "
        "(customer_id, created_at)",
        f"""CREATE TABLE member_activations (
            customer_id TEXT NOT NULL,
            offer_id TEXT NOT NULL,
            activated_at {ts} NOT NULL,
            PRIMARY KEY (customer_id, offer_id)
        )""",
        f"""CREATE TABLE member_favourite_changes (
            customer_id TEXT NOT NULL,
            change_id TEXT NOT NULL,
            changed_at {ts} NOT NULL,
            PRIMARY KEY (customer_id, change_id)
        )""",
        "CREATE INDEX member_favourite_changes_customer ON member_favourite_changes "
        "(customer_id, changed_at)",
        f"""CREATE TABLE member_requests (
            customer_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            created_at {ts} NOT NULL,
            done_at {ts},
            PRIMARY KEY (customer_id, request_id)
        )""",
    )


SQLITE_MIGRATION = Migration(MIGRATION_NAME, _steps("TEXT", "INTEGER"))
"""Member accounts, codes, tokens, events, inbox and requests, on SQLite."""
POSTGRES_MIGRATION = Migration(MIGRATION_NAME, _steps("TIMESTAMPTZ", "BIGINT"))
"""Member accounts, codes, tokens, events, inbox and requests, on PostgreSQL."""


def _actor(customer_id: str) -> str:
    return f"member:{customer_id}"


def _masked(address: str) -> str:
    channel, _, value = address.partition(":")
    if channel == "email":
        name, _, domain = value.partition("@")
        return f"email:{name[:1]}***@{domain}"
    return f"{channel}:***{value[-4:]}"


class MemberRepository:
    """Member sign-in and the member's own view of their data."""

    def __init__(
        self,
        db: Database,
        *,
        audit: AuditLog,
        versions: MasterVersions,
        ledger: LedgerRepository,
        communications: CommunicationsRepository,
        set_setting: Callable[[str, str, datetime], object],
        policy: MemberPolicy = DEFAULT_POLICY,
    ) -> None:
        self.db = db
        self.audit = audit
        self.versions = versions
        self.ledger = ledger
        self.communications = communications
        self.set_setting = set_setting
        """Sets one chain setting (the master data's own path: version, feed, audit)."""
        self.policy = policy
        self._keys: dict[str, str] = {}

    # -- keys and rate limits --------------------------------------------------------------------

    def _key(self, name: str) -> bytes:
        """A server secret made on first use and kept in member_keys (the same for every
        worker)."""
        if name not in self._keys:
            with self.db.guard("read member key"), self.db.transaction():
                self._key_in_tx(name)
        return bytes.fromhex(self._keys[name])

    def _count(self, bucket: str, now: datetime) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM member_events WHERE bucket = ? AND at > ?",
            (bucket, self.db.ts(now - self.policy.window)),
        ).fetchone()
        return int(row[0])

    def _event(self, bucket: str, now: datetime) -> None:
        self.db.execute(
            "INSERT INTO member_events (bucket, at) VALUES (?, ?)", (bucket, self.db.ts(now))
        )

    def _refuse_if_limited(self, buckets: Sequence[tuple[str, int, str]], now: datetime) -> None:
        for bucket, limit, field in buckets:
            if self._count(bucket, now) >= limit:
                raise TooManyAttempts(
                    field,
                    f"too many attempts from this {field.split('.')[-1]}: "
                    f"at most {limit} per {int(self.policy.window.total_seconds() // 60)} "
                    "minutes; try again later",
                )

    def record_failure(self, ip: str, now: datetime, address: str = "") -> None:
        """Count a wrong code or token against the caller's IP (and address), committed even
        though the request itself is refused."""
        with self.db.guard("count member failure"), self.db.transaction():
            self._event(f"fail:ip:{ip}", now)
            if address:
                self._event(f"fail:addr:{address}", now)
            # Old events are of no use to any window: keep the table small.
            self.db.execute(
                "DELETE FROM member_events WHERE bucket = ? AND at < ?",
                (f"fail:ip:{ip}", self.db.ts(now - self.policy.window * 2)),
            )

    def check_caller(self, ip: str, now: datetime) -> None:
        """429 when this IP has failed too often within the window (before any check)."""
        with self.db.guard("read member failures"), self.db.snapshot():
            self._refuse_if_limited([(f"fail:ip:{ip}", self.policy.failures_per_ip, "ip")], now)

    # -- sign-in ---------------------------------------------------------------------------------

    def _customer_of(self, address: Address) -> str | None:
        row = self.db.execute(
            "SELECT customer_id FROM member_identities WHERE address = ?", (address.key,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        # A customer the chain already knows (call center, loads) signs in with its contact.
        if address.channel == "email":
            sql, args = "SELECT customer_id FROM customer_index WHERE email = ?", [address.value]
        else:
            digits = address.value
            variants = {digits[::-1]}
            if digits.startswith("7") and len(digits) == 11:
                variants |= {("8" + digits[1:])[::-1], digits[1:][::-1]}
            marks = ", ".join("?" for _ in variants)
            sql = f"SELECT customer_id FROM customer_index WHERE phone_rev IN ({marks})"
            args = sorted(variants)
        rows = self.db.execute(
            "SELECT i.customer_id FROM customer_index i JOIN customers c "
            "ON c.customer_id = i.customer_id WHERE c.merged_into IS NULL "
            f"AND i.customer_id IN ({sql}) ORDER BY i.customer_id LIMIT 2",
            args,
        ).fetchall()
        # Two customers with one contact: neither is signed in by it (the call center merges).
        return str(rows[0][0]) if len(rows) == 1 else None

    def request_code(
        self, address: Address, ip: str, now: datetime, *, language: str = "ru"
    ) -> dict[str, Any]:
        """Make a code for `address` and put it in the outbox (transactional); the same answer
        whether or not a customer has the address. 429 when the address or IP asked too often."""
        policy = self.policy
        challenge_id = uuid.uuid4().hex
        code = new_code()
        with self.db.guard("request member code"), self.db.transaction():
            self._refuse_if_limited(
                [
                    (f"fail:ip:{ip}", policy.failures_per_ip, "ip"),
                    (f"code:ip:{ip}", policy.codes_per_ip, "ip"),
                    (
                        f"code:addr:{address.key}",
                        policy.codes_per_address,
                        f"body.{_field(address)}",
                    ),
                ],
                now,
            )
            last = self.db.execute(
                "SELECT MAX(created_at) FROM member_challenges WHERE address = ?",
                (address.key,),
            ).fetchone()[0]
            if last is not None and self.db.dt(last) > now - policy.resend_after:
                wait = int((self.db.dt(last) + policy.resend_after - now).total_seconds()) + 1
                raise TooManyAttempts(
                    f"body.{_field(address)}", f"a code was just sent; ask again in {wait} s"
                )
            self._event(f"code:ip:{ip}", now)
            self._event(f"code:addr:{address.key}", now)
            # Events older than any window count for nothing: keep the table small.
            self.db.execute(
                "DELETE FROM member_events WHERE bucket IN (?, ?) AND at < ?",
                (f"code:ip:{ip}", f"code:addr:{address.key}", self.db.ts(now - policy.window * 2)),
            )
            self.db.execute(
                "INSERT INTO member_challenges (challenge_id, address, code_hash, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?)",
                (
                    challenge_id,
                    address.key,
                    code_hash(self._key_in_tx("code"), challenge_id, code),
                    self.db.ts(now),
                    self.db.ts(now + policy.code_ttl),
                ),
            )
            self.db.execute(
                "DELETE FROM member_challenges WHERE address = ? AND expires_at < ?",
                (address.key, self.db.ts(now - policy.window * 2)),
            )
            customer_id = self._customer_of(address)
            minutes = int(policy.code_ttl.total_seconds() // 60)
            if language == "en":
                subject, body = "Your sign-in code", f"Code {code}. Valid {minutes} min."
            else:
                subject, body = "Код для входа", f"Код {code}. Действует {minutes} мин."
            self.communications.enqueue_in_tx(
                [
                    NewMessage(
                        idempotency_key=f"member-code:{challenge_id}",
                        customer_id=customer_id or f"signup:{address.key}",
                        channel=address.channel,
                        kind="transactional",
                        address=address.value,
                        subject=subject,
                        body=body,
                        expires_at=now + policy.code_ttl,
                    )
                ],
                now,
            )
        return {
            "challenge_id": challenge_id,
            "channel": address.channel,
            "expires_in_s": int(policy.code_ttl.total_seconds()),
            "retry_after_s": int(policy.resend_after.total_seconds()),
        }

    def _key_in_tx(self, name: str) -> bytes:
        # Keys are made outside any write transaction of the caller: read it before.
        if name not in self._keys:
            row = self.db.execute(
                "SELECT value FROM member_keys WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                value = secrets.token_hex(32)
                self.db.execute(
                    "INSERT INTO member_keys (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name, value),
                )
                row = self.db.execute(
                    "SELECT value FROM member_keys WHERE name = ?", (name,)
                ).fetchone()
            self._keys[name] = str(row[0])
        return bytes.fromhex(self._keys[name])

    def check_code(
        self,
        challenge_id: str,
        code: str,
        ip: str,
        now: datetime,
        *,
        consents: Mapping[str, bool] | None = None,
        profile: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Tokens for the customer of a right, fresh code; a new customer (with an electronic
        card and the consents given) on the first code of an unknown address. A wrong code
        is counted against the challenge, the address and the IP, then 401."""
        policy = self.policy
        problem: tuple[str, str] | None = None
        address = ""
        with self.db.guard("check member code"), self.db.transaction():
            self._refuse_if_limited([(f"fail:ip:{ip}", policy.failures_per_ip, "ip")], now)
            row = self.db.execute(
                "SELECT address, code_hash, attempts, expires_at, used_at FROM "
                f"member_challenges WHERE challenge_id = ?{self.db.dialect.for_update}",
                (challenge_id,),
            ).fetchone()
            if row is None:
                problem = ("body.challenge_id", "unknown sign-in challenge: ask for a new code")
            else:
                address = str(row[0])
                self._refuse_if_limited(
                    [(f"fail:addr:{address}", policy.failures_per_address, "body.code")], now
                )
                if row[4] is not None:
                    problem = ("body.code", "this code was already used: ask for a new one")
                elif self.db.dt(row[3]) <= now:
                    problem = ("body.code", "this code expired: ask for a new one")
                elif int(row[2]) >= policy.code_attempts:
                    problem = ("body.code", "too many wrong codes: ask for a new one")
                elif not secrets.compare_digest(
                    str(row[1]), code_hash(self._key_in_tx("code"), challenge_id, code)
                ):
                    self.db.execute(
                        "UPDATE member_challenges SET attempts = attempts + 1 "
                        "WHERE challenge_id = ?",
                        (challenge_id,),
                    )
                    left = policy.code_attempts - int(row[2]) - 1
                    problem = ("body.code", f"wrong code ({left} attempts left)")
            if problem is None:
                return self._sign_in(challenge_id, address, now, consents or {}, profile or {})
        self.record_failure(ip, now, address)
        raise Unauthorized(*problem)

    def _sign_in(
        self,
        challenge_id: str,
        address_key: str,
        now: datetime,
        consents: Mapping[str, bool],
        profile: Mapping[str, str],
    ) -> dict[str, Any]:
        channel, _, value = address_key.partition(":")
        address = Address(channel, value)
        at = self.db.ts(now)
        customer_id = self._customer_of(address)
        created = customer_id is None
        if customer_id is None:
            if consents.get("personal_data") is not True:
                raise InvalidRequest(
                    "body.consents.personal_data",
                    "signing up needs consent to the processing of personal data (152-FZ)",
                )
            customer_id = self._create_customer(address, profile, at)
        self.db.execute(
            "UPDATE member_challenges SET used_at = ? WHERE challenge_id = ?", (at, challenge_id)
        )
        self.db.execute(
            "INSERT INTO member_identities (address, customer_id, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (address) DO NOTHING",
            (address.key, customer_id, at),
        )
        self.db.execute(
            "INSERT INTO member_accounts (customer_id, created_at) VALUES (?, ?) "
            "ON CONFLICT (customer_id) DO NOTHING",
            (customer_id, at),
        )
        given = [
            Consent(
                customer_id,
                address.channel,
                purpose,
                bool(granted),
                "member_api",
                f"code {challenge_id[:8]} to {_masked(address.key)}",
                now,
            )
            for purpose, granted in sorted(consents.items())
            if purpose in ("advertising", "personal_data")
        ]
        if given:
            self.communications.record_in_tx(given)
        family_id = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO member_families (family_id, customer_id, created_at) VALUES (?, ?, ?)",
            (family_id, customer_id, at),
        )
        tokens = self._issue(customer_id, family_id, now)
        self.audit.record(
            "member",
            customer_id,
            "sign_up" if created else "sign_in",
            None,
            {"address": _masked(address.key), "family_id": family_id},
            _actor(customer_id),
            at,
        )
        return {**tokens, "customer_id": customer_id, "created": created}

    def _create_customer(self, address: Address, profile: Mapping[str, str], at: Any) -> str:
        customer_id = f"c-{uuid.uuid4().hex[:16]}"
        attributes: dict[str, Any] = {k: v for k, v in profile.items() if k in PROFILE_FIELDS}
        attributes["phone" if address.channel == "sms" else "email"] = address.value
        version = self.versions.bump()
        self.db.execute(
            "INSERT INTO customers (customer_id, attributes, version) VALUES (?, ?, ?)",
            (customer_id, json.dumps(attributes, sort_keys=True, ensure_ascii=False), version),
        )
        self.db.execute(
            "INSERT INTO customer_index (customer_id, last_name, first_name, middle_name, "
            "phone_rev, email) VALUES (?, ?, ?, ?, ?, ?)",
            (customer_id, *search_keys(attributes)),
        )
        card_no = new_card_no()
        while self.db.execute("SELECT 1 FROM cards WHERE card_no = ?", (card_no,)).fetchone():
            card_no = new_card_no()
        self.db.execute(
            "INSERT INTO cards (card_no, customer_id, status, version, card_type, block_reason, "
            "issued_at) VALUES (?, ?, 'active', ?, 'electronic', '', ?)",
            (card_no, customer_id, self.versions.bump(), at),
        )
        register_cards(self.db, [(card_no, customer_id)])
        actor = _actor(customer_id)
        self.audit.record(
            "customer", customer_id, "create", None, {"customer_id": customer_id}, actor, at
        )
        self.audit.record(
            "card", card_no, "issue", None, {"card_no": card_no, "type": "electronic"}, actor, at
        )
        return customer_id

    def _issue(self, customer_id: str, family_id: str, now: datetime) -> dict[str, Any]:
        policy = self.policy
        refresh = "mbrr." + secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO member_refresh (token_hash, family_id, customer_id, issued_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?)",
            (
                token_digest(refresh),
                family_id,
                customer_id,
                self.db.ts(now),
                self.db.ts(now + policy.refresh_ttl),
            ),
        )
        access = sign_access_token(
            self._key_in_tx("access"),
            TokenClaims(customer_id, family_id, now, now + policy.access_ttl),
        )
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in_s": int(policy.access_ttl.total_seconds()),
        }

    def refresh(self, token: str, ip: str, now: datetime) -> dict[str, Any]:
        """A new token pair for an unused refresh token (which is spent). An already spent
        one is a stolen copy or a replay: its whole family is signed out, then 401."""
        problem = ""
        with self.db.guard("refresh member tokens"), self.db.transaction():
            self._refuse_if_limited([(f"fail:ip:{ip}", self.policy.failures_per_ip, "ip")], now)
            row = self.db.execute(
                "SELECT r.family_id, r.customer_id, r.expires_at, r.used_at, f.revoked_at "
                "FROM member_refresh r JOIN member_families f ON f.family_id = r.family_id "
                f"WHERE r.token_hash = ?{self.db.dialect.for_update}",
                (token_digest(token),),
            ).fetchone()
            if row is None:
                problem = "unknown refresh token: sign in again"
            elif row[4] is not None:
                problem = "this sign-in was signed out: sign in again"
            elif row[3] is not None:
                self._revoke_family(str(row[0]), str(row[1]), "refresh token reused", now)
                problem = "refresh token already used: every session of this sign-in is signed out"
            elif self.db.dt(row[2]) <= now:
                problem = "refresh token expired: sign in again"
            else:
                self.db.execute(
                    "UPDATE member_refresh SET used_at = ? WHERE token_hash = ?",
                    (self.db.ts(now), token_digest(token)),
                )
                return {**self._issue(str(row[1]), str(row[0]), now), "customer_id": row[1]}
        self.record_failure(ip, now)
        raise Unauthorized("body.refresh_token", problem)

    def _revoke_family(self, family_id: str, customer_id: str, reason: str, now: datetime) -> None:
        at = self.db.ts(now)
        self.db.execute(
            "UPDATE member_families SET revoked_at = ?, reason = ? "
            "WHERE family_id = ? AND revoked_at IS NULL",
            (at, reason, family_id),
        )
        self.audit.record(
            "member", customer_id, "sign_out", None, {"family_id": family_id, "reason": reason},
            _actor(customer_id), at,
        )  # fmt: skip

    def authenticate(self, token: str, ip: str, now: datetime) -> TokenClaims:
        """The claims of a valid member access token whose sign-in is not signed out; a
        refused token is counted against the IP (401), too many refusals are 429."""
        try:
            with self.db.guard("check member token"):
                self._refuse_if_limited([(f"fail:ip:{ip}", self.policy.failures_per_ip, "ip")], now)
                claims = read_access_token(self._key("access"), token, now)
                row = self.db.execute(
                    "SELECT f.revoked_at, a.tokens_valid_after FROM member_families f "
                    "JOIN member_accounts a ON a.customer_id = f.customer_id "
                    "WHERE f.family_id = ? AND f.customer_id = ?",
                    (claims.family_id, claims.customer_id),
                ).fetchone()
            if row is None or row[0] is not None:
                raise Unauthorized("authorization", "this sign-in was signed out: sign in again")
            if row[1] is not None and claims.issued_at < self.db.dt(row[1]):
                raise Unauthorized("authorization", "signed out everywhere: sign in again")
        except Unauthorized:
            self.record_failure(ip, now)
            raise
        return claims

    def sign_out(self, claims: TokenClaims, now: datetime, *, everywhere: bool) -> dict[str, Any]:
        """End this sign-in, or every sign-in of the customer (all refresh tokens and access
        tokens issued before now)."""
        customer_id = claims.customer_id
        with self.db.guard("member sign-out"), self.db.transaction():
            if everywhere:
                families = [
                    str(r[0])
                    for r in self.db.execute(
                        "SELECT family_id FROM member_families WHERE customer_id = ? "
                        "AND revoked_at IS NULL",
                        (customer_id,),
                    ).fetchall()
                ]
                # Access tokens carry their issue time in milliseconds.
                self.db.execute(
                    "UPDATE member_accounts SET tokens_valid_after = ? WHERE customer_id = ?",
                    (self.db.ts(now + timedelta(milliseconds=1)), customer_id),
                )
            else:
                families = [claims.family_id]
            for family_id in families:
                self._revoke_family(
                    family_id, customer_id, "everywhere" if everywhere else "sign-out", now
                )
        return {"signed_out": len(families), "everywhere": everywhere}

    # -- the member's data -------------------------------------------------------------------------

    def _record(self, customer_id: str, action: str, detail: Any, now: datetime) -> None:
        self.audit.record(
            "member", customer_id, action, None, detail, _actor(customer_id), self.db.ts(now)
        )

    def audit_read(self, customer_id: str, action: str, detail: Any, now: datetime) -> None:
        """Audit a read of the member's own data (every member action is audited)."""
        with self.db.guard("audit member action"), self.db.transaction():
            self._record(customer_id, action, detail, now)

    def _card_nos(self, customer_id: str) -> list[str]:
        return [
            str(r[0])
            for r in self.db.execute(
                "SELECT card_no FROM cards WHERE customer_id = ? ORDER BY card_no",
                (customer_id,),
            ).fetchall()
        ]

    def _attributes(self, customer_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT attributes FROM customers WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        if row is None:
            raise UnknownObject("customer", "this member's customer no longer exists")
        found: dict[str, Any] = json.loads(row[0])
        return found

    def _set_attributes(
        self, customer_id: str, attributes: Mapping[str, Any], action: str, now: datetime
    ) -> None:
        before = self._attributes(customer_id)
        version = self.versions.bump()
        self.db.execute(
            "UPDATE customers SET attributes = ?, version = ? WHERE customer_id = ?",
            (
                json.dumps(dict(attributes), sort_keys=True, ensure_ascii=False),
                version,
                customer_id,
            ),
        )
        self.db.execute(
            "UPDATE customer_index SET last_name = ?, first_name = ?, middle_name = ?, "
            "phone_rev = ?, email = ? WHERE customer_id = ?",
            (*search_keys(attributes), customer_id),
        )
        # Card rows carry the customer's attributes to the stores: re-send them.
        self.db.execute(
            "UPDATE cards SET version = ? WHERE customer_id = ?", (version, customer_id)
        )
        self.audit.record(
            "customer", customer_id, action, before, dict(attributes), _actor(customer_id),
            self.db.ts(now),
        )  # fmt: skip

    def profile(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The member's profile and sign-in addresses."""
        with self.db.guard("read member profile"), self.db.transaction():
            attributes = self._attributes(customer_id)
            addresses = [
                str(r[0])
                for r in self.db.execute(
                    "SELECT address FROM member_identities WHERE customer_id = ? ORDER BY address",
                    (customer_id,),
                ).fetchall()
            ]
            self._record(customer_id, "read_profile", None, now)
        return {
            "customer_id": customer_id,
            "profile": {k: attributes.get(k, "") for k in (*PROFILE_FIELDS, "phone", "email")},
            "sign_in": addresses,
        }

    def update_profile(
        self, customer_id: str, changes: Mapping[str, str], now: datetime
    ) -> dict[str, Any]:
        """Change the profile fields given (PROFILE_FIELDS only)."""
        with self.db.guard("update member profile"), self.db.transaction():
            attributes = self._attributes(customer_id)
            self._set_attributes(customer_id, {**attributes, **changes}, "member_profile", now)
        return self.profile(customer_id, now)

    def consents(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """Current consent per channel and purpose, and their history."""
        with self.db.guard("read member consents"), self.db.transaction():
            current = self.communications.current_consents([customer_id]).get(customer_id, {})
            self._record(customer_id, "read_consents", None, now)
        return {
            "consents": [
                {"channel": c, "purpose": p, "granted": g} for (c, p), g in sorted(current.items())
            ],
            "history": self.communications.consent_history(customer_id),
        }

    def set_consents(
        self, customer_id: str, changes: Sequence[tuple[str, str, bool]], now: datetime
    ) -> dict[str, Any]:
        """Grant or withdraw consents ((channel, purpose, granted)), evidence: the member API."""
        with self.db.guard("set member consents"), self.db.transaction():
            self.communications.record_in_tx(
                [
                    Consent(customer_id, ch, p, g, "member_api", "member's own request", now)
                    for ch, p, g in changes
                ]
            )
            self._record(
                customer_id,
                "set_consents",
                [{"channel": c, "purpose": p, "granted": g} for c, p, g in changes],
                now,
            )
        return self.consents(customer_id, now)

    def cards(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The member's cards with status and type (barcode number)."""
        with self.db.guard("read member cards"), self.db.transaction():
            rows = self.db.execute(
                "SELECT card_no, status, card_type FROM cards WHERE customer_id = ? "
                "ORDER BY card_no",
                (customer_id,),
            ).fetchall()
            self._record(customer_id, "read_cards", None, now)
        return {
            "cards": [
                {"card_no": r[0], "status": r[1], "type": r[2], "barcode": r[0]} for r in rows
            ]
        }

    def own_card(self, customer_id: str, card_no: str) -> None:
        """404 for a card that is not the member's (whoever else's it is)."""
        with self.db.guard("read member card"):
            row = self.db.execute(
                "SELECT customer_id, status FROM cards WHERE card_no = ?", (card_no,)
            ).fetchone()
        if row is None or row[0] != customer_id:
            raise UnknownObject("card_no", f"no card {card_no!r} among this member's cards")
        if row[1] in ("blocked", "inactive"):
            raise Conflict("card_no", f"card {card_no} is {row[1]}: it shows no QR code")

    def _ecard_key(self, now: datetime) -> str:
        """The chain's e-card key; one is made (a chain setting, so the master feed carries it
        to every register) when there is none yet."""
        with self.db.guard("read ecard key"):
            row = self.db.execute(
                "SELECT value FROM settings WHERE name = ?", (ECARD_KEY_SETTING,)
            ).fetchone()
        if row is None:
            self.set_setting(ECARD_KEY_SETTING, secrets.token_hex(32), now)
            with self.db.guard("read ecard key"):
                row = self.db.execute(
                    "SELECT value FROM settings WHERE name = ?", (ECARD_KEY_SETTING,)
                ).fetchone()
        return str(row[0])

    def card_qr(self, customer_id: str, card_no: str, now: datetime) -> dict[str, Any]:
        """The card's QR payload of this time step, and how long it stays valid (404 for a
        card not the member's, 409 for a blocked one)."""
        self.own_card(customer_id, card_no)
        payload, step = ecard_payload(self._ecard_key(now), card_no, now.timestamp())
        with self.db.guard("audit member qr"), self.db.transaction():
            self._record(customer_id, "show_qr", {"card_no": card_no, "step": step}, now)
        return {
            "card_no": card_no,
            "barcode": card_no,
            "qr": payload,
            "step_s": ECARD_STEP_S,
            "refresh_in_s": ECARD_STEP_S - int(now.timestamp()) % ECARD_STEP_S,
        }

    def balances(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """Balance per wallet over the member's cards, with pending accruals (from when) and
        burning amounts (until when)."""
        with self.db.guard("read member balances"), self.db.transaction():
            cards = self._card_nos(customer_id)
            self._record(customer_id, "read_balances", None, now)
        wallets: dict[str, int] = {}
        pending: list[dict[str, Any]] = []
        burning: list[dict[str, Any]] = []
        for card_no in cards:
            found = self.ledger.balance(card_no, now)
            if found is None:
                continue
            for wallet, amount in found.wallets.items():
                wallets[wallet] = wallets.get(wallet, 0) + amount
            pending += [
                {
                    "card_no": card_no,
                    "wallet": p.wallet,
                    "amount": p.amount,
                    "active_from": p.active_from.isoformat(),
                }
                for p in found.pending
            ]
            burning += [
                {
                    "card_no": card_no,
                    "wallet": b.wallet,
                    "amount": b.amount,
                    "expires_at": b.expires_at.isoformat(),
                }
                for b in found.burning
            ]
        wallets.setdefault("bonus", 0)
        return {
            "wallets": [{"wallet": w, "balance": a} for w, a in sorted(wallets.items())],
            "pending": sorted(pending, key=lambda p: p["active_from"]),
            "burning": sorted(burning, key=lambda b: b["expires_at"]),
        }

    def history(self, customer_id: str, now: datetime, *, limit: int = 50) -> dict[str, Any]:
        """Accruals and spends over the member's cards, newest first, each linked to its
        receipt (`sale_id`) when a sale made it."""
        if not 1 <= limit <= HISTORY_LIMIT:
            raise MalformedRequest("limit", f"expected 1..{HISTORY_LIMIT}, got {limit}")
        with self.db.guard("read member history"), self.db.transaction():
            cards = self._card_nos(customer_id)
            rows: list[Any] = []
            if cards:
                marks = ", ".join("?" for _ in cards)
                rows = self.db.execute(
                    "SELECT l.card_no, l.wallet, l.kind, l.amount, l.rule_id, l.source, "
                    "l.created_at, l.expires_at, s.sale_id FROM ledger l "
                    "LEFT JOIN sales s ON s.sale_id = l.source "
                    f"WHERE l.card_no IN ({marks}) "
                    "ORDER BY l.created_at DESC, l.entry_id DESC LIMIT ?",
                    (*cards, limit),
                ).fetchall()
            self._record(customer_id, "read_history", None, now)
        return {
            "history": [
                {
                    "card_no": r[0],
                    "wallet": r[1],
                    "kind": r[2],
                    "amount": int(r[3]),
                    "rule_id": r[4],
                    "at": self.db.dt(r[6]).isoformat(),
                    "expires_at": None if r[7] is None else self.db.dt(r[7]).isoformat(),
                    "sale_id": r[8],
                }
                for r in rows
            ]
        }

    def receipt(self, customer_id: str, sale_id: str, now: datetime) -> dict[str, Any]:
        """An e-receipt of one of the member's sales: its lines, each with the discounts it
        got and the promotion that gave them, tenders and loyalty movements. 404 for a sale
        that is not the member's."""
        with self.db.guard("read member receipt"), self.db.transaction():
            row = self.db.execute(
                "SELECT s.payload FROM sales s JOIN cards c ON c.card_no = s.card_no "
                "WHERE s.sale_id = ? AND c.customer_id = ?",
                (sale_id, customer_id),
            ).fetchone()
            if row is None:
                raise UnknownObject("sale_id", f"no receipt {sale_id!r} of this member")
            sale = decode_sale(bytes(row[0]))
            product_ids = sorted({line.product_id for line in sale.lines})
            rule_ids = sorted(
                {d.rule_id for line in sale.lines for d in line.discounts}
                | {m.rule_id for m in sale.loyalty if m.rule_id}
            )
            names = _names(self.db, "products", "product_id", product_ids)
            promos = self._promotion_titles(rule_ids)
            self._record(customer_id, "read_receipt", {"sale_id": sale_id}, now)
        return {
            "sale_id": sale.sale_id,
            "store_id": sale.store_id,
            "closed_at": sale.closed_at.isoformat(),
            "card_no": sale.card_no,
            "return_of": sale.return_of,
            "subtotal_minor": sale.subtotal_minor,
            "discount_minor": sale.discount_minor,
            "total_minor": sale.total_minor,
            "lines": [
                {
                    "line_no": line.line_no,
                    "product_id": line.product_id,
                    "name": names.get(line.product_id, line.product_id),
                    "qty_milli": line.qty_milli,
                    "unit_price_minor": line.unit_price_minor,
                    "amount_minor": line.amount_minor,
                    "discount_minor": sum(d.amount_minor for d in line.discounts),
                    "total_minor": line.amount_minor - sum(d.amount_minor for d in line.discounts),
                    "discounts": [
                        {
                            "rule_id": d.rule_id,
                            "promotion": promos.get(d.rule_id, d.rule_id),
                            "amount_minor": d.amount_minor,
                        }
                        for d in line.discounts
                    ],
                }
                for line in sale.lines
            ],
            "payments": [
                {"method": p.method, "amount_minor": p.amount_minor} for p in sale.payments
            ],
            "loyalty": [
                {
                    "wallet": m.wallet,
                    "kind": m.kind,
                    "amount": m.amount,
                    "rule_id": m.rule_id,
                    "promotion": promos.get(m.rule_id, m.rule_id),
                    "active_from": None if m.active_from is None else m.active_from.isoformat(),
                    "expires_at": None if m.expires_at is None else m.expires_at.isoformat(),
                }
                for m in sale.loyalty
            ],
        }

    def _promotion_titles(self, rule_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for rule_id in rule_ids:
            row = self.db.execute(
                "SELECT doc FROM promotions WHERE promotion_id = ?", (rule_id.split("/")[0],)
            ).fetchone()
            if row is not None:
                doc = json.loads(row[0]) if isinstance(row[0], str) else row[0]
                if isinstance(doc, Mapping):
                    out[rule_id] = str(doc.get("title") or doc.get("name") or rule_id)
        return out

    def offers(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The member's personal offers valid now or later, each with whether the member
        activated it."""
        with self.db.guard("read member offers"), self.db.transaction():
            rows = self.db.execute(
                "SELECT o.offer_id, o.product_id, o.percent, o.valid_from, o.valid_to, "
                "o.source, a.activated_at, p.name FROM personal_offers o "
                "LEFT JOIN member_activations a ON a.customer_id = o.customer_id "
                "AND a.offer_id = o.offer_id "
                "LEFT JOIN products p ON p.product_id = o.product_id "
                "WHERE o.customer_id = ? AND (o.valid_to IS NULL OR o.valid_to > ?) "
                "ORDER BY o.offer_id",
                (customer_id, self.db.ts(now)),
            ).fetchall()
            self._record(customer_id, "read_offers", None, now)
        return {
            "offers": [
                {
                    "offer_id": r[0],
                    "product_id": r[1],
                    "product_name": r[7] or r[1],
                    "percent": str(r[2]),
                    "valid_from": None if r[3] is None else self.db.dt(r[3]).isoformat(),
                    "valid_to": None if r[4] is None else self.db.dt(r[4]).isoformat(),
                    "source": r[5],
                    "activated": r[6] is not None,
                    "activated_at": None if r[6] is None else self.db.dt(r[6]).isoformat(),
                }
                for r in rows
            ]
        }

    def activate_offer(self, customer_id: str, offer_id: str, now: datetime) -> dict[str, Any]:
        """Mark one of the member's offers activated (404 for another customer's offer)."""
        with self.db.guard("activate member offer"), self.db.transaction():
            row = self.db.execute(
                "SELECT valid_to FROM personal_offers WHERE customer_id = ? AND offer_id = ?",
                (customer_id, offer_id),
            ).fetchone()
            if row is None:
                raise UnknownObject("offer_id", f"no offer {offer_id!r} of this member")
            if row[0] is not None and self.db.dt(row[0]) <= now:
                raise Conflict("offer_id", f"offer {offer_id} ended; it cannot be activated")
            self.db.execute(
                "INSERT INTO member_activations (customer_id, offer_id, activated_at) "
                "VALUES (?, ?, ?) ON CONFLICT (customer_id, offer_id) DO NOTHING",
                (customer_id, offer_id, self.db.ts(now)),
            )
            self._record(customer_id, "activate_offer", {"offer_id": offer_id}, now)
        return {"offer_id": offer_id, "activated": True}

    def coupons(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The member's coupons as active, used (redeemed) or expired (past the batch's last
        day, or voided), each with its batch's name and validity."""
        with self.db.guard("read member coupons"), self.db.transaction():
            rows = self.db.execute(
                "SELECT c.code, c.batch_id, c.status, c.issued_at, c.redeemed_at, b.name, "
                "b.valid_from, b.valid_to, b.single_use, b.promotion_id FROM coupons c "
                "JOIN coupon_batches b ON b.batch_id = c.batch_id WHERE c.customer_id = ? "
                "ORDER BY c.code LIMIT 500",
                (customer_id,),
            ).fetchall()
            self._record(customer_id, "read_coupons", None, now)
        out: dict[str, list[dict[str, Any]]] = {"active": [], "used": [], "expired": []}
        today = now.date().isoformat()
        for r in rows:
            coupon = {
                "code": r[0],
                "batch_id": r[1],
                "name": r[5],
                "promotion_id": r[9],
                "single_use": bool(r[8]),
                "valid_from": r[6],
                "valid_to": r[7],
                "issued_at": None if r[3] is None else self.db.dt(r[3]).isoformat(),
                "redeemed_at": None if r[4] is None else self.db.dt(r[4]).isoformat(),
            }
            if r[2] == "redeemed":
                out["used"].append(coupon)
            elif r[2] == "void" or (r[7] is not None and str(r[7]) < today):
                out["expired"].append(coupon)
            else:
                out["active"].append(coupon)
        return out

    def categories(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The chain's category list, the member's chosen favourites and how many changes are
        left in the period."""
        with self.db.guard("read member categories"), self.db.transaction():
            chosen = list(self._attributes(customer_id).get("favourite_categories") or [])
            offered = self._category_list()
            changes, period = self._favourites_rule()
            left = changes - self._count_changes(customer_id, now, period)
            self._record(customer_id, "read_categories", None, now)
        return {
            "categories": offered,
            "chosen": chosen,
            "changes_left": max(left, 0),
            "period_days": period.days,
        }

    def _category_list(self) -> list[str]:
        # The chain's categories are its products' (else their departments): what the
        # favourite-category rules and reports group by (center/crm/customers_store.py).
        return [
            str(r[0])
            for r in self.db.execute(
                "SELECT DISTINCT COALESCE(NULLIF(category, ''), department) FROM products "
                "WHERE COALESCE(NULLIF(category, ''), department) <> '' ORDER BY 1 LIMIT 500"
            ).fetchall()
        ]

    def _favourites_rule(self) -> tuple[int, timedelta]:
        """(changes, period) from the chain settings, else the policy's defaults."""
        found = dict(
            self.db.execute(
                "SELECT name, value FROM settings WHERE name IN "
                "('member.favourites_changes', 'member.favourites_period_days')"
            ).fetchall()
        )
        changes = int(found.get("member.favourites_changes", self.policy.favourites_changes))
        days = found.get("member.favourites_period_days")
        period = self.policy.favourites_period if days is None else timedelta(days=int(days))
        return changes, period

    def _count_changes(self, customer_id: str, now: datetime, period: timedelta) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM member_favourite_changes WHERE customer_id = ? "
            "AND changed_at > ?",
            (customer_id, self.db.ts(now - period)),
        ).fetchone()
        return int(row[0])

    def set_categories(
        self, customer_id: str, chosen: Sequence[str], now: datetime
    ) -> dict[str, Any]:
        """Choose favourite categories from the chain's list (the CRM attribute the rules
        read); 409 once the period's changes are used up, 422 naming an unknown category."""
        with self.db.guard("set member categories"), self.db.transaction():
            offered = {c.casefold(): c for c in self._category_list()}
            picked: list[str] = []
            for i, name in enumerate(chosen):
                found = offered.get(name.casefold())
                if found is None:
                    raise InvalidRequest(
                        f"body.categories[{i}]",
                        f"{name[:80]!r} is not one of the chain's categories",
                    )
                if found not in picked:
                    picked.append(found)
            changes, period = self._favourites_rule()
            if self._count_changes(customer_id, now, period) >= changes:
                raise Conflict(
                    "body.categories",
                    f"favourite categories change at most {changes} times in {period.days} "
                    "days (chain settings member.favourites_changes, "
                    "member.favourites_period_days)",
                )
            attributes = self._attributes(customer_id)
            self._set_attributes(
                customer_id,
                {**attributes, "favourite_categories": picked},
                "member_favourites",
                now,
            )
            self.db.execute(
                "INSERT INTO member_favourite_changes (customer_id, change_id, changed_at) "
                "VALUES (?, ?, ?)",
                (customer_id, uuid.uuid4().hex, self.db.ts(now)),
            )
        return self.categories(customer_id, now)

    def stores(
        self, customer_id: str, now: datetime, near: tuple[float, float] | None
    ) -> dict[str, Any]:
        """The chain's stores; nearest first when `near` is given and stores have coordinates."""
        with self.db.guard("read member stores"), self.db.transaction():
            columns = self.db.dialect.columns_of(self.db.execute, "stores")
            has_coords = {"lat", "lon"} <= columns
            extra = ", lat, lon" if has_coords else ""
            rows = self.db.execute(
                f"SELECT store_id, name, format, region, address{extra} FROM stores "
                "ORDER BY store_id"
            ).fetchall()
            self._record(customer_id, "read_stores", None, now)
        stores = [
            {"store_id": r[0], "name": r[1], "format": r[2], "region": r[3], "address": r[4]}
            for r in rows
        ]
        out: dict[str, Any] = {"stores": stores}
        if near is not None:
            if not has_coords:
                out["nearest"] = None
                out["note"] = "the chain's stores carry no coordinates: nearest is unknown"
            else:
                lat, lon = near
                dist = {r[0]: _km(lat, lon, r[5], r[6]) for r in rows if r[5] is not None}
                for s in stores:
                    s["distance_km"] = dist.get(s["store_id"])
                stores.sort(key=lambda s: (s["distance_km"] is None, s["distance_km"] or 0))
                out["nearest"] = stores[0]["store_id"] if dist else None
        return out

    def notifications(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The member's inbox, newest first."""
        with self.db.guard("read member inbox"), self.db.transaction():
            rows = self.db.execute(
                "SELECT notification_id, title, body, created_at, read_at FROM "
                "member_notifications WHERE customer_id = ? ORDER BY created_at DESC LIMIT 100",
                (customer_id,),
            ).fetchall()
            self._record(customer_id, "read_notifications", None, now)
        return {
            "notifications": [
                {
                    "notification_id": r[0],
                    "title": r[1],
                    "body": r[2],
                    "at": self.db.dt(r[3]).isoformat(),
                    "read": r[4] is not None,
                }
                for r in rows
            ]
        }

    def set_push(
        self, customer_id: str, contacts: Mapping[str, str | None], now: datetime
    ) -> dict[str, Any]:
        """Set or remove (None) the member's push contacts (`webpush`, `fcm_token`: the CRM
        attributes the communications channels send to)."""
        with self.db.guard("set member push"), self.db.transaction():
            attributes = self._attributes(customer_id)
            changed = {**attributes, **{k: v for k, v in contacts.items() if v is not None}}
            for name, value in contacts.items():
                if value is None:
                    changed.pop(name, None)
            self._set_attributes(customer_id, changed, "member_push", now)
            held = {k: k in changed for k in ("webpush", "fcm_token")}
        return {"push": held}

    def notify(self, customer_id: str, title: str, body: str, now: datetime) -> str:
        """Put a notification in the member's inbox; its id."""
        notification_id = uuid.uuid4().hex
        with self.db.guard("notify member"), self.db.transaction():
            self.db.execute(
                "INSERT INTO member_notifications (notification_id, customer_id, title, body, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (notification_id, customer_id, title, body, self.db.ts(now)),
            )
        return notification_id

    def read_notification(
        self, customer_id: str, notification_id: str, now: datetime
    ) -> dict[str, Any]:
        """Mark one of the member's notifications read (404 for anyone else's)."""
        with self.db.guard("read member notification"), self.db.transaction():
            row = self.db.execute(
                "SELECT read_at FROM member_notifications WHERE notification_id = ? "
                "AND customer_id = ?",
                (notification_id, customer_id),
            ).fetchone()
            if row is None:
                raise UnknownObject(
                    "notification_id", f"no notification {notification_id!r} of this member"
                )
            if row[0] is None:
                self.db.execute(
                    "UPDATE member_notifications SET read_at = ? WHERE notification_id = ?",
                    (self.db.ts(now), notification_id),
                )
            self._record(customer_id, "read_notification", {"id": notification_id}, now)
        return {"notification_id": notification_id, "read": True}

    # -- 152-FZ ------------------------------------------------------------------------------------

    def export_data(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """Everything the Center keeps about the member, as JSON (a 152-FZ request, carried out
        at once and audited)."""
        request_id = uuid.uuid4().hex
        with self.db.guard("export member data"), self.db.transaction():
            attributes = self._attributes(customer_id)
            cards = [
                {"card_no": r[0], "status": r[1], "type": r[2]}
                for r in self.db.execute(
                    "SELECT card_no, status, card_type FROM cards WHERE customer_id = ? "
                    "ORDER BY card_no",
                    (customer_id,),
                ).fetchall()
            ]
            card_nos = [c["card_no"] for c in cards]
            ledger: list[dict[str, Any]] = []
            sales: list[dict[str, Any]] = []
            if card_nos:
                marks = ", ".join("?" for _ in card_nos)
                ledger = [
                    {"card_no": r[0], "wallet": r[1], "kind": r[2], "amount": int(r[3]),
                     "source": r[4], "at": self.db.dt(r[5]).isoformat()}
                    for r in self.db.execute(
                        "SELECT card_no, wallet, kind, amount, source, created_at FROM ledger "
                        f"WHERE card_no IN ({marks}) ORDER BY entry_id",
                        card_nos,
                    ).fetchall()
                ]  # fmt: skip
                sales = [
                    {"sale_id": r[0], "store_id": r[1], "closed_at": self.db.dt(r[2]).isoformat(),
                     "total_minor": int(r[3]), "discount_minor": int(r[4])}
                    for r in self.db.execute(
                        "SELECT sale_id, store_id, closed_at, total_minor, discount_minor "
                        f"FROM sales WHERE card_no IN ({marks}) ORDER BY closed_at",
                        card_nos,
                    ).fetchall()
                ]  # fmt: skip
            addresses = [
                str(r[0])
                for r in self.db.execute(
                    "SELECT address FROM member_identities WHERE customer_id = ?", (customer_id,)
                ).fetchall()
            ]
            messages = [
                {
                    "channel": r[0],
                    "subject": r[1],
                    "state": r[2],
                    "at": self.db.dt(r[3]).isoformat(),
                }
                for r in self.db.execute(
                    "SELECT channel, subject, state, created_at FROM comm_messages "
                    "WHERE customer_id = ? ORDER BY created_at",
                    (customer_id,),
                ).fetchall()
            ]
            offers = [
                {"offer_id": r[0], "product_id": r[1], "percent": str(r[2])}
                for r in self.db.execute(
                    "SELECT offer_id, product_id, percent FROM personal_offers "
                    "WHERE customer_id = ?",
                    (customer_id,),
                ).fetchall()
            ]
            self.db.execute(
                "INSERT INTO member_requests (request_id, customer_id, kind, created_at, done_at) "
                "VALUES (?, ?, 'export', ?, ?)",
                (request_id, customer_id, self.db.ts(now), self.db.ts(now)),
            )
            self._record(customer_id, "export_data", {"request_id": request_id}, now)
        return {
            "request_id": request_id,
            "exported_at": now.isoformat(),
            "customer_id": customer_id,
            "attributes": attributes,
            "sign_in": addresses,
            "cards": cards,
            "consents": self.communications.consent_history(customer_id),
            "ledger": ledger,
            "receipts": sales,
            "messages": messages,
            "personal_offers": offers,
            "history_of_changes": [
                {k: r[k] for k in ("kind", "action", "after", "actor", "at")}
                for kind in ("customer", "member")
                for r in self.audit.audit_history(kind, customer_id, limit=1000)
            ],
        }

    def delete_data(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """Anonymise the member (a 152-FZ deletion request, carried out at once): personal
        attributes, sign-in addresses, contacts in the outbox and the inbox go; the ledger and
        the sales keep their amounts under the card numbers; cards are deactivated and every
        sign-in ends."""
        request_id = uuid.uuid4().hex
        at = self.db.ts(now)
        with self.db.guard("delete member data"), self.db.transaction():
            attributes = self._attributes(customer_id)
            kept = {"anonymised_at": now.isoformat()}
            self._set_attributes(customer_id, kept, "anonymise", now)
            self.db.execute(
                "UPDATE customers SET status = 'inactive' WHERE customer_id = ?", (customer_id,)
            )
            version = self.versions.bump()
            self.db.execute(
                "UPDATE cards SET status = 'inactive', version = ? WHERE customer_id = ?",
                (version, customer_id),
            )
            addresses = [
                str(r[0])
                for r in self.db.execute(
                    "SELECT address FROM member_identities WHERE customer_id = ?", (customer_id,)
                ).fetchall()
            ]
            for address in addresses:
                # The first code went out before the customer existed, under the address.
                self.db.execute(
                    "UPDATE comm_messages SET customer_id = ? WHERE customer_id = ?",
                    (customer_id, f"signup:{address}"),
                )
                self.db.execute("DELETE FROM member_challenges WHERE address = ?", (address,))
                self.db.execute(
                    "DELETE FROM member_events WHERE bucket IN (?, ?)",
                    (f"code:addr:{address}", f"fail:addr:{address}"),
                )
            self.db.execute("DELETE FROM member_identities WHERE customer_id = ?", (customer_id,))
            self.db.execute(
                "DELETE FROM member_notifications WHERE customer_id = ?", (customer_id,)
            )
            self.db.execute(
                "UPDATE comm_messages SET address = '', body = '', subject = '' "
                "WHERE customer_id = ?",
                (customer_id,),
            )
            self.db.execute(
                "UPDATE member_families SET revoked_at = ?, reason = 'deleted' "
                "WHERE customer_id = ? AND revoked_at IS NULL",
                (at, customer_id),
            )
            self.db.execute(
                "UPDATE member_accounts SET tokens_valid_after = ? WHERE customer_id = ?",
                (self.db.ts(now + timedelta(milliseconds=1)), customer_id),
            )
            self.db.execute(
                "INSERT INTO member_requests (request_id, customer_id, kind, created_at, done_at) "
                "VALUES (?, ?, 'delete', ?, ?)",
                (request_id, customer_id, at, at),
            )
            self._record(
                customer_id,
                "delete_data",
                {"request_id": request_id, "removed": sorted(attributes)},
                now,
            )
        return {"request_id": request_id, "customer_id": customer_id, "anonymised": True}


def _field(address: Address) -> str:
    return "phone" if address.channel == "sms" else "email"


def _names(db: Database, table: str, key: str, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    return {
        str(r[0]): str(r[1])
        for r in db.execute(f"SELECT {key}, name FROM {table} WHERE {key} IN ({marks})", ids)
    }


def _km(lat: float, lon: float, lat2: Any, lon2: Any) -> float:
    """Great-circle distance in km (haversine)."""
    p1, p2 = math.radians(lat), math.radians(float(lat2))
    dp, dl = p2 - p1, math.radians(float(lon2) - lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(6371.0 * 2 * math.asin(math.sqrt(h)), 3)
