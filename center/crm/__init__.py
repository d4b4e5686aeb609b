"""Customers and cards: records, questionnaires, search, merge, the call-center view."""

__all__: list[str] = []
