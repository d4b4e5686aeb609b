"""Reading untrusted rule documents field by field, collecting every problem at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["FieldReader"]

_MISSING: Any = object()
_MAX_PLACES = 6
_MAX_DECIMAL_CHARS = 40


class FieldReader:
    """Typed access to one mapping of a rule document; problems go to a shared list.

    A getter never raises: on a bad value it records ``"<owner>: <path>: <why>, got <value>"``
    and returns a harmless placeholder, so one pass reports every problem of every document.
    """

    def __init__(
        self,
        doc: Mapping[str, Any],
        owner: str,
        problems: list[str],
        path: str = "",
        exponent: int = 2,
    ) -> None:
        self.doc = doc
        self.owner = owner
        self.problems = problems
        self.path = path
        # The currency's minor-unit exponent: amounts entered in major units are read with it.
        self.exponent = exponent
        self.seen: set[str] = set()
        self.children: list[FieldReader] = []

    def where(self, key: str | int) -> str:
        """The dotted path of ``key`` below this reader, e.g. ``schedule.hours`` or ``steps[1]``."""
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str | int, message: str) -> None:
        """Record a problem about ``key``."""
        self.problems.append(f"{self.owner}: {self.where(key)}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        value = self.doc.get(key, _MISSING)
        # null means "not given": the default applies, or the field is reported as required.
        if value is _MISSING or value is None:
            if default is _MISSING:
                self.problem(key, "required")
            return _MISSING
        return value

    def has(self, key: str) -> bool:
        """Whether ``key`` is present and not null."""
        self.seen.add(key)
        return self.doc.get(key) is not None

    def str_(self, key: str, default: str | None = _MISSING, *, choices: Sequence[str] = ()) -> str:
        """A non-empty string (or one of ``choices``)."""
        value = self._get(key, default)
        if value is _MISSING:
            return default if isinstance(default, str) else ""
        if not isinstance(value, str) or not value:
            self.problem(key, f"expected a non-empty string, got {value!r}")
            return ""
        if choices and value not in choices:
            self.problem(key, f"expected one of {', '.join(choices)}, got {value!r}")
            return ""
        return value

    def int_(
        self,
        key: str,
        default: int | None = _MISSING,
        *,
        min_value: int | None = None,
        max_value: int | None = None,
    ) -> int | None:
        """An int within [min_value, max_value]; ``None`` if absent with a ``None`` default."""
        value = self._get(key, default)
        if value is _MISSING:
            return default if default is not _MISSING else 0
        return self.check_int(key, value, min_value=min_value, max_value=max_value)

    def check_int(
        self,
        key: str | int,
        value: object,
        *,
        min_value: int | None = None,
        max_value: int | None = None,
    ) -> int:
        """Validate an already-fetched int value."""
        bad = isinstance(value, bool) or not isinstance(value, int)
        if not bad:
            assert isinstance(value, int)
            bad = (min_value is not None and value < min_value) or (
                max_value is not None and value > max_value
            )
        if bad:
            if min_value is not None and max_value is not None:
                want = f"an integer between {min_value} and {max_value}"
            elif min_value is not None:
                want = f"an integer >= {min_value}"
            elif max_value is not None:
                want = f"an integer <= {max_value}"
            else:
                want = "an integer"
            self.problem(key, f"expected {want}, got {value!r}")
            return min_value if min_value is not None else 0
        assert isinstance(value, int)
        return value

    def decimal(self, key: str, *, low: Decimal, high: Decimal, default: Any = _MISSING) -> Decimal:
        """A decimal string (or int) within [low, high]; floats are refused (they are inexact)."""
        value = self._get(key, default)
        if value is _MISSING:
            return default if isinstance(default, Decimal) else low
        parsed: Decimal | None = None
        if isinstance(value, str) and len(value) <= _MAX_DECIMAL_CHARS:
            try:
                parsed = Decimal(value.strip())
            except InvalidOperation:
                parsed = None
        elif isinstance(value, int) and not isinstance(value, bool):
            parsed = Decimal(value)
        if parsed is None or not parsed.is_finite() or not low <= parsed <= high:
            self.problem(key, f"expected a decimal string between {low} and {high}, got {value!r}")
            return low
        # A bounded number of places keeps the exact integer arithmetic of money.py small.
        if int(parsed.normalize().as_tuple().exponent) < -_MAX_PLACES:
            self.problem(key, f"expected at most {_MAX_PLACES} decimal places, got {value!r}")
            return low
        return parsed

    def major(self, key: str) -> int | None:
        """An amount in major units as a decimal string ("200.00"), returned in minor units;
        ``None`` if absent. At most ``exponent`` decimal places, never negative, never a float."""
        value = self._get(key, None)
        if value is _MISSING:
            return None
        parsed: Decimal | None = None
        if isinstance(value, str) and len(value) <= _MAX_DECIMAL_CHARS:
            try:
                parsed = Decimal(value.strip())
            except InvalidOperation:
                parsed = None
        elif isinstance(value, int) and not isinstance(value, bool):
            parsed = Decimal(value)
        if parsed is None or not parsed.is_finite() or parsed < 0:
            self.problem(key, f"expected an amount in major units like '200.00', got {value!r}")
            return None
        scaled = parsed.scaleb(self.exponent)
        if scaled != scaled.to_integral_value():
            self.problem(key, f"expected at most {self.exponent} decimal places, got {value!r}")
            return None
        return int(scaled)

    def bool_(self, key: str, default: bool) -> bool:
        """A JSON boolean."""
        value = self._get(key, default)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {value!r}")
            return default
        return value

    def date_(self, key: str) -> date | None:
        """An ISO date string, or null."""
        value = self._get(key, None)
        if value is _MISSING:
            return None
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(key, f"expected an ISO date (YYYY-MM-DD) or null, got {value!r}")
        return None

    def list_(self, key: str, default: list[Any] | None = _MISSING) -> list[Any]:
        """A JSON array (list or tuple)."""
        value = self._get(key, default)
        if value is _MISSING:
            return list(default) if isinstance(default, list) else []
        if not isinstance(value, list | tuple):
            self.problem(key, f"expected a list, got {value!r}")
            return []
        return list(value)

    def str_list(self, key: str) -> tuple[str, ...]:
        """An optional list of non-empty strings, returned sorted and de-duplicated."""
        items = self.list_(key, [])
        good: set[str] = set()
        for i, item in enumerate(items):
            if isinstance(item, str) and item:
                good.add(item)
            else:
                self.problems.append(
                    f"{self.owner}: {self.where(key)}[{i}]: expected a non-empty string, "
                    f"got {item!r}"
                )
        return tuple(sorted(good))

    def child(self, key: str | int, value: object = _MISSING) -> FieldReader | None:
        """A reader over a nested mapping (``doc[key]``, or ``value`` found at ``key``)."""
        if value is _MISSING:
            assert isinstance(key, str)
            value = self._get(key, None)
            if value is _MISSING:
                return None
        if not isinstance(value, Mapping):
            self.problem(key, f"expected an object, got {value!r}")
            return None
        reader = FieldReader(value, self.owner, self.problems, self.where(key), self.exponent)
        self.children.append(reader)
        return reader

    def unknown_fields(self) -> list[str]:
        """Paths of keys present in the document that no getter asked for (likely typos)."""
        found = [self.where(k) for k in self.doc if k not in self.seen]
        for reader in self.children:
            found.extend(reader.unknown_fields())
        return found
