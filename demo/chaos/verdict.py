"""The invariants: the reference balances and the checks of a finished run, as a report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from itertools import pairwise
from typing import Any

from demo.chaos.cluster import ChaosCluster
from demo.chaos.integrity import integrity, postgres_integrity
from demo.chaos.options import ChaosOptions
from demo.chaos.readback import center_queries, clock_offsets
from demo.chaos.replayer import Acked
from sync_protocol import Sale, chain_hash, sale_fingerprint


def _active(move: Any, now: datetime) -> bool:
    return (move.active_from is None or move.active_from <= now) and (
        move.expires_at is None or move.expires_at > now
    )


def reference_balances(sales: Iterable[Sale], now: datetime) -> dict[str, int]:
    """Per card sold to: the signed bonus movements of its sales that count at `now`."""
    out: dict[str, int] = defaultdict(int)
    for sale in sales:
        if sale.card_no is None:
            continue
        out[sale.card_no] += 0  # a card whose movements do not count yet is still checked
        for move in sale.loyalty:
            if move.wallet == "bonus" and _active(move, now):
                out[sale.card_no] += move.amount if move.kind == "accrue" else -move.amount
    return dict(out)


def verdict(
    options: ChaosOptions,
    cluster: ChaosCluster,
    acked: Acked,
    journals: dict[str, list[Sale]],
    center_rows: dict[str, dict[str, Any]],
    store_rows: dict[str, dict[str, Any]],
    reference: dict[str, int],
    center_balances: dict[str, int],
    health: dict[str, Any],
    dsn: str,
) -> dict[str, Any]:
    root = options.root.resolve()
    sales_rows, seq_rows, ledger_rows, welcome_rows, received_rows = center_queries(
        root / "center" / "center.db", dsn
    )
    center_sales = {str(r[0]): (str(r[1]), int(r[2]), str(r[3])) for r in sales_rows}
    seq_dupes, ledger_dupes = seq_rows[0][0], ledger_rows[0][0]
    welcome = {str(r[0]): int(r[1]) for r in welcome_rows}
    journaled = {s.sale_id: s for sales in journals.values() for s in sales}
    lost = [i for i in acked.sale_ids if i not in center_sales]
    lost_at_register = [i for i in acked.sale_ids if i not in journaled]
    phantom = [i for i in center_sales if i not in journaled]
    payload_mismatch = [
        i
        for i, s in journaled.items()
        if i in center_sales and center_sales[i][2] != sale_fingerprint(s)
    ]
    journal_gaps = 0
    chain_breaks_journal = 0
    for sales in journals.values():
        seqs = [s.seq for s in sales]
        journal_gaps += (max(seqs) - len(seqs)) if seqs else 0
        for before, after in pairwise(sales):
            if after.prev_hash != chain_hash(before):
                chain_breaks_journal += 1
        if sales and sales[0].prev_hash:
            chain_breaks_journal += 1
    center_gaps = sum(
        end - start + 1 for row in center_rows.values() for start, end in row.get("gaps", [])
    )
    center_breaks = sum(len(row.get("chain_breaks", [])) for row in center_rows.values())
    totals_mismatch = []
    for register_id, sales in journals.items():
        want = (len(sales), sum(s.total_minor for s in sales))
        center = center_rows.get(register_id, {})
        store = store_rows.get(register_id, {})
        got_center = (int(center.get("receipts", 0)), int(center.get("total_minor", 0)))
        got_store = (int(store.get("receipts", 0)), int(store.get("total_minor", 0)))
        if got_center != want or got_store != want:
            totals_mismatch.append(
                {
                    "register_id": register_id,
                    "journal": want,
                    "store": got_store,
                    "center": got_center,
                }
            )
    balance_mismatch = [
        {"card_no": c, "center": center_balances.get(c), "reference": welcome.get(c, 0) + v}
        for c, v in sorted(reference.items())
        if center_balances.get(c) != welcome.get(c, 0) + v
    ]
    dbs = integrity(root.rglob("*.db"))
    if dsn:
        dbs.update(postgres_integrity(dsn))
    checks = {
        "lost": len(lost),
        "lost_at_register": len(lost_at_register),
        "duplicated": int(seq_dupes) + int(ledger_dupes) + len(payload_mismatch),
        "phantom": len(phantom),
        "sequence_gaps": journal_gaps + center_gaps,
        "chain_breaks": chain_breaks_journal + center_breaks,
        "quarantined_at_center": int(health.get("quarantined", 0)),
        "totals_mismatch": len(totals_mismatch),
        "balance_mismatch": len(balance_mismatch),
        "integrity_not_ok": sum(1 for v in dbs.values() if v != "ok"),
    }
    journal_total = sum(s.total_minor for s in journaled.values())
    center_total = sum(int(r.get("total_minor", 0)) for r in center_rows.values())
    report: dict[str, Any] = {
        "seed": options.seed,
        "stores": len(cluster.store_nodes),
        "registers": len(cluster.registers),
        "acked_sales": len(acked.sale_ids),
        "journaled_sales": len(journaled),
        "center_sales": len(center_sales),
        **checks,
        "register_total_minor": journal_total,
        "center_total_minor": center_total,
        "acked_total_minor": sum(acked.total_minor.values()),
        "cards_checked": len(reference),
        "databases_checked": len(dbs),
        "integrity": "ok" if checks["integrity_not_ok"] == 0 else dbs,
        "clock_ahead_seen_s": clock_offsets(
            journals,
            {s: root / f"store-{s}" / "store.db" for s in cluster.store_nodes},
            dict(received_rows),
        ),
    }
    if totals_mismatch:
        report["totals_mismatch_detail"] = totals_mismatch[:5]
    if balance_mismatch:
        report["balance_mismatch_detail"] = balance_mismatch[:5]
    if lost:
        report["lost_detail"] = lost[:5]
    report["_ok"] = all(v == 0 for v in checks.values()) and journal_total == center_total
    return report
