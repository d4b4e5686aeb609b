"""Supplier cabinet: supplier organisations and their people, audiences, campaigns estimated on
the stored history and launched as supplier-funded promotions, accounts, campaign reports."""
