"""Per-register reconciliation: what the demo rang up, what each tier holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from demo.chaos import reference_balances
from demo.cluster import Cluster
from demo.replay import RegisterTally
from sync_protocol import Sale


@dataclass(slots=True)
class Row:
    register_id: str
    tally: RegisterTally
    pos_receipts: int
    pos_lines: int
    pos_total: int
    store_receipts: int
    store_lines: int
    store_total: int
    center_receipts: int
    center_lines: int
    center_total: int
    center_gaps: int


def _get(url: str, **params: Any) -> Any:
    response = requests.get(url, params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def collect_rows(cluster: Cluster, tallies: dict[str, RegisterTally]) -> list[Row]:
    """Ask every register, store node and the Center for their per-register figures."""
    store_rows: dict[str, dict[str, Any]] = {}
    center_rows: dict[str, dict[str, Any]] = {}
    for store_id, node in cluster.store_nodes.items():
        try:
            summary = _get(node.url + "/v1/sales/summary")
        except requests.RequestException:
            summary = []
        items = summary.get("registers", []) if isinstance(summary, dict) else summary
        store_rows.update({str(r["register_id"]): r for r in items})
        try:
            response = cluster.center_get(store_id, "/v1/reconciliation", {"store_id": store_id})
            response.raise_for_status()
            rec = response.json()
        except requests.RequestException:
            rec = {"registers": []}
        center_rows.update({str(r["register_id"]): r for r in rec["registers"]})
    rows = []
    for register_id, node in cluster.registers.items():
        try:
            pos = _get(node.url + "/v1/sales/summary")
        except requests.RequestException:
            pos = {}
        store = store_rows.get(register_id, {})
        center = center_rows.get(register_id, {})
        rows.append(
            Row(
                register_id=register_id,
                tally=tallies[register_id],
                pos_receipts=int(pos.get("receipts", 0)),
                pos_lines=int(pos.get("lines", 0)),
                pos_total=int(pos.get("total_minor", 0)),
                store_receipts=int(store.get("receipts", 0)),
                store_lines=int(store.get("lines", 0)),
                store_total=int(store.get("total_minor", 0)),
                center_receipts=int(center.get("receipts", 0)),
                center_lines=int(center.get("lines", 0)),
                center_total=int(center.get("total_minor", 0)),
                center_gaps=len(center.get("gaps", [])),
            )
        )
    return rows


def format_table(rows: list[Row]) -> str:
    """A fixed-width table: receipts, lines and totals per register at every tier."""
    head = (
        f"{'register':<10} {'tier':<9} {'receipts':>9} {'lines':>8} {'total_minor':>13}\n"
        + "-" * 53
    )
    out = [head]
    for r in rows:
        t = r.tally
        out.append(
            f"{r.register_id:<10} {'replayed':<9} {t.receipts:>9} {t.lines:>8} {t.total_minor:>13}"
        )
        out.append(
            f"{'':<10} {'register':<9} {r.pos_receipts:>9} {r.pos_lines:>8} {r.pos_total:>13}"
        )
        out.append(
            f"{'':<10} {'store':<9} {r.store_receipts:>9} {r.store_lines:>8} {r.store_total:>13}"
        )
        out.append(
            f"{'':<10} {'center':<9} {r.center_receipts:>9} {r.center_lines:>8} "
            f"{r.center_total:>13}"
        )
    return "\n".join(out)


def verdict(rows: list[Row]) -> tuple[bool, str]:
    """The closing line: RECONCILED ... or a line naming the first mismatch."""
    receipts = sum(r.tally.receipts for r in rows)
    total = sum(r.tally.total_minor for r in rows)
    missing = sum(max(0, r.tally.receipts - r.center_receipts) for r in rows)
    duplicated = sum(max(0, r.center_receipts - r.tally.receipts) for r in rows)
    problems = []
    for r in rows:
        t = r.tally
        for tier, (n, lines, amount) in {
            "register": (r.pos_receipts, r.pos_lines, r.pos_total),
            "store": (r.store_receipts, r.store_lines, r.store_total),
            "center": (r.center_receipts, r.center_lines, r.center_total),
        }.items():
            if (n, lines, amount) != (t.receipts, t.lines, t.total_minor):
                problems.append(
                    f"{r.register_id}@{tier}: receipts {n}/{t.receipts} lines {lines}/{t.lines} "
                    f"total_minor {amount}/{t.total_minor}"
                )
        if r.center_gaps:
            problems.append(f"{r.register_id}@center: {r.center_gaps} sequence gaps")
    if not problems and missing == 0 and duplicated == 0:
        return True, f"RECONCILED receipts={receipts} missing=0 duplicated=0 total_minor={total}"
    return False, (
        f"NOT RECONCILED receipts={receipts} missing={missing} duplicated={duplicated} "
        f"total_minor={total} first_mismatch={problems[0] if problems else 'none'}"
    )


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """Every card sold to: the Center's balance against a recomputation from the journals."""

    cards: int
    mismatched: tuple[dict[str, Any], ...]

    @property
    def line(self) -> str:
        return f"BALANCES cards={self.cards} mismatched={len(self.mismatched)}"


def check_balances(
    cluster: Cluster, journals: dict[str, list[Sale]], now: datetime
) -> BalanceCheck:
    """Recompute each card's bonus balance from the registers' journals and compare.

    The reference is the card's welcome credit (the Center's `welcome` movement, made at
    import, not by a sale) plus every bonus accrual active at `now` minus every spend, read
    from the sales exactly as the registers journaled them; the Center's figure comes from its
    ledger of lots (`GET /v1/customers/{card}/balance`).
    """
    sales = [sale for register_sales in journals.values() for sale in register_sales]
    reference = reference_balances(sales, now)
    store_of = {sale.card_no: sale.store_id for sale in sales if sale.card_no}
    mismatched: list[dict[str, Any]] = []
    for card_no, from_sales in sorted(reference.items()):
        store_id = store_of[card_no]
        history = cluster.center_get(
            store_id, f"/v1/customers/{card_no}/history", {"limit": "1000"}
        )
        history.raise_for_status()
        welcome = sum(
            int(m["amount"]) for m in history.json()["movements"] if m["rule_id"] == "welcome"
        )
        answer = cluster.center_get(store_id, f"/v1/customers/{card_no}/balance")
        answer.raise_for_status()
        center = int(answer.json()["wallets"].get("bonus", 0))
        if center != welcome + from_sales:
            mismatched.append(
                {"card_no": card_no, "center": center, "reference": welcome + from_sales}
            )
    return BalanceCheck(cards=len(reference), mismatched=tuple(mismatched))
