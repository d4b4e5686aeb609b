"""Receipt printers (ESC/POS) and customer displays: the library the POS agent prints through.

Empty in the foundation; the slips-and-display issue fills it (stdlib, python-escpos, pyserial).
"""

__all__: list[str] = []
