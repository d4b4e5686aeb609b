"""Advertising blocks: managed in the console, shown in the portal and the app by segment and
priority (`model.py` pure, `store.py`, `api.py`, `pages.py`)."""

__all__: list[str] = []
