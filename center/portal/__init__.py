"""The customer's portal (личный кабинет): pages under /portal over the member services
(`pages.py`, `session.py`; the purchase history's periods and chart `history.py`, the e-card's
drawing `ecard.py`)."""

__all__: list[str] = []
