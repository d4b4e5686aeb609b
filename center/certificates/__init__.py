"""Gift certificates: batches and nominals, codes, states, the balance (the Center is its one
authority), holds store nodes take for receipts, and the movements linked to sales."""

__all__: list[str] = []
