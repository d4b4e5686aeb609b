"""Promotions constructor, coupons, segments, personal offers, simulation and recompute."""

__all__: list[str] = []
