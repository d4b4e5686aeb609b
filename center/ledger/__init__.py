"""The loyalty ledger: movements, lots, debits, debt, expiry, balances, returns, adjustments."""

__all__: list[str] = []
