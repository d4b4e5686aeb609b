"""Models trained on purchase histories: buy-again and new-to-customer offers, churn risk, and
their honest evaluation on the Complete Journey year.

The CLI names load without numpy, pandas or LightGBM; the rest load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from center.models.cli import MODELS_COMMAND, add_models_commands, models_command

__all__ = [
    "MODELS_COMMAND",
    "ChurnModel",
    "NewItemRanker",
    "RepeatRanker",
    "Year",
    "add_models_commands",
    "analytics_purchases",
    "evaluate",
    "load_complete_journey",
    "models_command",
]

_LAZY = {
    "ChurnModel": "center.models.churn",
    "NewItemRanker": "center.models.discovery",
    "RepeatRanker": "center.models.repeat",
    "Year": "center.models.dataset",
    "analytics_purchases": "center.models.dataset",
    "load_complete_journey": "center.models.dataset",
    "evaluate": "center.models.evaluation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(name)
