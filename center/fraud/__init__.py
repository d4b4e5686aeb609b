"""Behavioural fraud signals: pure detectors over stored sales, kept once per case, reviewed."""

__all__: list[str] = []
