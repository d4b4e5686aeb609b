"""The chaos harness: real processes, kill -9 and network faults at seeded moments, then proof.

S stores x R registers x one Center run as separate processes on loopback. Every hop goes
through a FaultProxy (register -> store node, store node -> Center). Real baskets are rung up
through the registers' local API while a seeded monkey SIGKILLs registers, store nodes and
the Center (and starts them again) and sets faults on the proxies. At the end every fault is
cleared, the harness waits until the Center holds every sale the registers journaled, and
checks the invariants (exactly once, totals to the cent, balances, hash chains, SQLite
integrity). A seed fixes the baskets, the schedule of kills and faults and their targets; the
interleaving with the processes' own timing is not (and need not be) reproducible.

Options: a register and its store node with skewed clocks (LOYALTY_CLOCK_SKEW_S, opposite
ways, so their difference is the sum; both must stay inside the ±300 s signature window),
and the Center on PostgreSQL (a throwaway cluster) instead of SQLite.
"""

from demo.chaos.cards import household_cards
from demo.chaos.cluster import CLOCK_SKEW_ENV
from demo.chaos.convergence import wait_synced
from demo.chaos.integrity import integrity, postgres_integrity
from demo.chaos.options import ChaosOptions
from demo.chaos.readback import journal_sales
from demo.chaos.replayer import ring_up
from demo.chaos.run import ChaosRun, run_chaos
from demo.chaos.verdict import reference_balances

__all__ = [
    "CLOCK_SKEW_ENV",
    "ChaosOptions",
    "ChaosRun",
    "household_cards",
    "integrity",
    "journal_sales",
    "postgres_integrity",
    "reference_balances",
    "ring_up",
    "run_chaos",
    "wait_synced",
]
