"""Master data and its change feed to the store nodes; the dataset importer."""

__all__: list[str] = []
