"""The register's short, synchronous calls to its store node while a receipt is open.

Reservations (bonus and single-use coupons) and online card look-ups. Each call waits at most
`[offline] reserve_timeout_s`; no answer means StoreNodeUnreachable and the register falls back
to its offline rules. Used from the register's worker thread only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from pos_agent.certificates import CertificateRefused
from pos_agent.config import Config
from pos_agent.credentials import Credentials, load_credentials
from pos_agent.errors import CouponRefused, SpendRefused, StoreNodeUnreachable

__all__ = ["Hold", "StoreLink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation the store node granted."""

    reservation_id: str
    expires_at: datetime
    amount: int
    available: int


def _session(verify: str | bool = True) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never a proxy between a register and its store node
    session.verify = verify  # an https store node: its CA (store_node.ca_file) or the system's
    return session


class StoreLink:
    """Calls to the store node at `store_url()` (None: not known yet, i.e. unreachable)."""

    def __init__(
        self,
        config: Config,
        store_url: Callable[[], str | None],
        *,
        clock: Callable[[], datetime],
        session_factory: Callable[[], requests.Session] | None = None,
    ) -> None:
        self.config = config
        self.store_url = store_url
        self.clock = clock
        self._session_factory = session_factory or functools.partial(
            _session, config.store_node.verify
        )
        self._session: requests.Session | None = None
        self._credentials: Credentials | None = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _call(
        self, method: str, path: str, body: Any = None, *, timeout_s: float | None = None
    ) -> requests.Response:
        url = self.store_url()
        if not url:
            raise StoreNodeUnreachable("the store node's address is not known yet")
        if self._credentials is None:
            # Read again each time until enrolled: `loyalty-pos enrol` may run meanwhile.
            self._credentials = load_credentials(self.config.register.data_dir)
        if self._session is None:
            self._session = self._session_factory()
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._credentials is not None:
            headers.update(
                self._credentials.headers(
                    method, url + path, None, data, now_s=self.clock().timestamp()
                )
            )
        try:
            return self._session.request(
                method,
                url + path,
                data=data or None,
                headers=headers,
                timeout=timeout_s or self.config.offline.reserve_timeout_s,
            )
        except requests.RequestException as exc:
            raise StoreNodeUnreachable(f"{method} {url}{path}: {exc.__class__.__name__}") from exc

    @staticmethod
    def _detail(response: requests.Response) -> str:
        try:
            return str(response.json().get("detail", response.text[:300]))
        except ValueError:
            return response.text[:300]

    def reserve(
        self,
        *,
        receipt_id: str,
        card_no: str | None,
        amount: int,
        codes: Sequence[str],
        signed_codes: Sequence[str],
    ) -> Hold:
        """Hold `amount` bonus and the single-use `codes` for the receipt.

        SpendRefused / CouponRefused when the node says no; StoreNodeUnreachable when it
        cannot decide (no answer, or an answer that is not a decision, e.g. an old node).
        """
        body: dict[str, Any] = {
            "receipt_id": receipt_id,
            "register_id": self.config.register.register_id,
            "card_no": card_no,
            "wallet": "bonus",
            "amount": amount,
            "coupon_codes": list(codes),
            "signed_codes": list(signed_codes),
        }
        response = self._call("POST", "/v1/reservations", body)
        if response.status_code == 201:
            answer = response.json()
            return Hold(
                reservation_id=str(answer["reservation_id"]),
                expires_at=datetime.fromisoformat(answer["expires_at"]),
                amount=int(answer["amount"]),
                available=int(answer.get("available", amount)),
            )
        if response.status_code == 409:
            kind = ""
            with contextlib.suppress(ValueError):
                kind = str(response.json().get("error", ""))
            detail = self._detail(response)
            if kind == "coupon_unavailable":
                raise CouponRefused(f"store node: {detail}")
            raise SpendRefused(f"store node: {detail}")
        log.warning(
            "store node answered POST /v1/reservations with HTTP %d (%s); selling offline",
            response.status_code,
            self._detail(response),
        )
        raise StoreNodeUnreachable(
            f"POST /v1/reservations: HTTP {response.status_code}: {self._detail(response)}"
        )

    def budget_hold(self, *, hold_id: str, want: Mapping[str, int], hold: bool) -> dict[str, int]:
        """promotion_id -> what the store node lets the receipt give of each supplier budget
        in `want` (held for sale `hold_id` when `hold`); StoreNodeUnreachable when it cannot
        answer (an old node too: the register then gives nothing of any budget)."""
        body = {"hold_id": hold_id, "want": dict(want), "hold": hold}
        response = self._call("POST", "/v1/budget-holds", body)
        if response.status_code == 200:
            answer = response.json().get("budgets_left", {})
            return {
                str(pid): int(amount)
                for pid, amount in answer.items()
                if isinstance(amount, int) and not isinstance(amount, bool)
            }
        raise StoreNodeUnreachable(
            f"POST /v1/budget-holds: HTTP {response.status_code}: {self._detail(response)}"
        )

    def settle(
        self, reservation_id: str, op: str, sale_id: str | None, codes: Sequence[str]
    ) -> None:
        """Deliver a queued commit (with the codes its sale redeemed) or release now."""
        if op != "commit":
            self.release(reservation_id)
            return
        path = f"/v1/reservations/{quote(reservation_id, safe='')}/commit"
        response = self._call("POST", path, {"sale_id": sale_id, "coupon_codes": list(codes)})
        if response.status_code not in (200, 404, 409):
            raise StoreNodeUnreachable(f"POST {path}: HTTP {response.status_code}")

    def release(self, reservation_id: str) -> None:
        """Release a hold now; StoreNodeUnreachable when the node does not confirm it."""
        response = self._call("DELETE", f"/v1/reservations/{quote(reservation_id, safe='')}")
        if response.status_code not in (200, 404, 409):
            raise StoreNodeUnreachable(
                f"DELETE /v1/reservations/{reservation_id}: HTTP {response.status_code}"
            )

    def hold_certificate(self, receipt_id: str, code: str, amount: int) -> dict[str, Any]:
        """Hold `amount` of certificate `code` for the receipt at the store node: its answer
        (balance_minor before, mode); CertificateRefused naming why, StoreNodeUnreachable."""
        body = {
            "register_id": self.config.register.register_id,
            "receipt_id": receipt_id,
            "code": code,
            "amount_minor": amount,
        }
        response = self._call("POST", "/v1/certificate-holds", body)
        if response.status_code == 201:
            answer: dict[str, Any] = response.json()
            return answer
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 404, 405):
            raise CertificateRefused(f"store node: {self._detail(response)}")
        raise StoreNodeUnreachable(
            f"POST /v1/certificate-holds: HTTP {response.status_code}: {self._detail(response)}"
        )

    def release_certificates(self, receipt_id: str, code: str | None = None) -> None:
        """Release the receipt's certificate holds (one code or all) at the store node."""
        body: dict[str, Any] = {
            "register_id": self.config.register.register_id,
            "receipt_id": receipt_id,
        }
        if code is not None:
            body["code"] = code
        response = self._call("POST", "/v1/certificate-holds/release", body)
        if response.status_code != 200:
            raise StoreNodeUnreachable(
                f"POST /v1/certificate-holds/release: HTTP {response.status_code}"
            )

    def card(self, card_no: str, *, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The card row the store node (or the Center behind it) knows; None: unknown card."""
        response = self._call(
            "GET",
            f"/v1/cards/{quote(card_no, safe='')}",
            timeout_s=timeout_s or self.config.offline.card_lookup_timeout_s,
        )
        if response.status_code == 404:
            try:
                kind = response.json().get("error")
            except ValueError:
                kind = None
            if kind == "unknown_object":
                return None
        if response.status_code != 200:
            raise StoreNodeUnreachable(
                f"GET /v1/cards/{card_no}: HTTP {response.status_code}: {self._detail(response)}"
            )
        try:
            row = response.json()
        except ValueError as exc:
            raise StoreNodeUnreachable(f"GET /v1/cards/{card_no}: not JSON") from exc
        if not isinstance(row, dict) or row.get("card_no") != card_no:
            raise StoreNodeUnreachable(f"GET /v1/cards/{card_no}: not the card's row")
        return row
