"""The end-to-end demo: a Center, store nodes and registers as real processes on loopback."""

from demo.baskets import Basket, BasketLine, load_baskets, to_receipt_line
from demo.cluster import Cluster, NodeSpec
from demo.postgres import ThrowawayPostgres

__all__ = [
    "Basket",
    "BasketLine",
    "Cluster",
    "NodeSpec",
    "ThrowawayPostgres",
    "load_baskets",
    "to_receipt_line",
]
