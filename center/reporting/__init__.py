"""Reports with SVG charts, on the Center's sales and ledger."""

__all__: list[str] = []
