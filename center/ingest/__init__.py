"""Sale ingest: claims, duplicates and conflicts, quarantine, reconciliation, receipt partitions."""

__all__: list[str] = []
