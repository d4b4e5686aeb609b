"""The typed walk: a checker and converter compiled once per message dataclass, both ways.

It is the definition of every message's wire form and of every error's field path; the fast
paths for sales (fast.py) must agree with it byte for byte.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .checks import CHECKS, Path, expected, fmt_path, wire_name
from .errors import MalformedMessage

__all__ = ["decode_datetime", "decode_str", "decoder", "encode_datetime", "encoder"]

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
"""Every integer on the wire fits a signed 64-bit column (SQLite, PostgreSQL BIGINT): a value
beyond it is refused here, naming its field, rather than failing in a database later."""

_NUL = "contains a NUL character (no database stores it)"

Decoder = Callable[[Any, Path], Any]
Encoder = Callable[[Any, Path, bool], Any]

_REQUIRED = 0
_DEFAULT = 1
_FACTORY = 2
_NONE = 3  # an `X | None` field without a dataclass default: missing means None
_NO_DEFAULT = object()


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, True) for `X | None`, else (tp, False)."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unsupported union {tp!r}")
    return tp, False


def _field_specs(cls: type) -> list[tuple[str, Any, int, Any]]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            specs.append((f.name, tp, _DEFAULT, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            specs.append((f.name, tp, _FACTORY, f.default_factory))
        elif _split_optional(tp)[1]:
            specs.append((f.name, tp, _NONE, None))
        else:
            specs.append((f.name, tp, _REQUIRED, None))
    return specs


def _dec_int(value: Any, path: Path) -> int:
    if type(value) is not int:
        raise expected(path, "int", value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise MalformedMessage(fmt_path(path), "integer out of the signed 64-bit range")
    return value


def decode_str(value: Any, path: Path) -> str:
    if type(value) is not str:
        raise expected(path, "str", value)
    if "\x00" in value:
        raise MalformedMessage(fmt_path(path), _NUL)
    return value


def _dec_bool(value: Any, path: Path) -> bool:
    if type(value) is not bool:
        raise expected(path, "bool", value)
    return value


def decode_datetime(value: Any, path: Path) -> datetime:
    if type(value) is not datetime or value.tzinfo is None:
        raise expected(path, "timestamp", value)
    return value


def _dec_any(value: Any, path: Path) -> Any:
    kind = type(value)
    if kind is list:
        for i, item in enumerate(value):
            _dec_any(item, (*path, i))
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedMessage(
                    fmt_path(path), f"map keys must be str, got {wire_name(key)}", value=key
                )
            _dec_any(item, (*path, key))
    elif kind is int:
        _dec_int(value, path)
    elif kind is str:
        decode_str(value, path)
    elif kind not in (bool, float, bytes, type(None), datetime):
        raise MalformedMessage(fmt_path(path), f"unsupported value of type {wire_name(value)}")
    return value


_DECODERS: dict[Any, Decoder] = {
    int: _dec_int,
    str: decode_str,
    bool: _dec_bool,
    datetime: decode_datetime,
    Any: _dec_any,
    dict: _dec_any,
}


def decoder(tp: Any) -> Decoder:
    """Compile (and cache) a function that validates a decoded msgpack value as `tp`."""
    cached = _DECODERS.get(tp)
    if cached is not None:
        return cached
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(tp)
    conv: Decoder
    if optional:
        inner_conv = decoder(inner)

        def conv(value: Any, path: Path) -> Any:
            return None if value is None else inner_conv(value, path)

    elif origin is tuple:
        item_conv = decoder(typing.get_args(tp)[0])

        def conv(value: Any, path: Path) -> Any:
            if type(value) is not list:
                raise expected(path, "array", value)
            return tuple([item_conv(item, (*path, i)) for i, item in enumerate(value)])

    elif origin is dict:
        value_conv = decoder(typing.get_args(tp)[1])

        def conv(value: Any, path: Path) -> Any:
            if type(value) is not dict:
                raise expected(path, "map", value)
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise MalformedMessage(
                        fmt_path(path), f"map keys must be str, got {wire_name(key)}", value=key
                    )
                out[key] = value_conv(item, (*path, key))
            return out

    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        conv = _dataclass_decoder(tp)
    else:
        raise TypeError(f"no decoder for {tp!r}")
    _DECODERS[tp] = conv
    return conv


def _dataclass_decoder(cls: type) -> Decoder:
    specs = [(name, decoder(tp), kind, default) for name, tp, kind, default in _field_specs(cls)]
    check = CHECKS.get(cls)

    def conv(value: Any, path: Path) -> Any:
        if type(value) is not dict:
            raise expected(path, "map", value)
        kwargs: dict[str, Any] = {}
        for name, field_conv, kind, default in specs:
            if name in value:
                kwargs[name] = field_conv(value[name], (*path, name))
            elif kind == _REQUIRED:
                raise MalformedMessage(fmt_path((*path, name)), "required field missing")
            elif kind == _FACTORY:
                kwargs[name] = default()
            else:
                kwargs[name] = default
        obj = cls(**kwargs)
        if check is not None:
            check(obj, path)
        return obj

    return conv


def _enc_int(value: Any, path: Path, omit: bool) -> int:
    if type(value) is not int:
        raise expected(path, "int", value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise MalformedMessage(fmt_path(path), "integer out of the signed 64-bit range")
    return value


def _enc_str(value: Any, path: Path, omit: bool) -> str:
    if type(value) is not str:
        raise expected(path, "str", value)
    if "\x00" in value:
        raise MalformedMessage(fmt_path(path), _NUL)
    return value


def _enc_bool(value: Any, path: Path, omit: bool) -> bool:
    if type(value) is not bool:
        raise expected(path, "bool", value)
    return value


def encode_datetime(value: Any, path: Path, omit: bool) -> datetime:
    if not isinstance(value, datetime):
        raise expected(path, "datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise MalformedMessage(
            fmt_path(path),
            "naive datetime (no tzinfo)",
            value=value,
            hint="times of facts are aware UTC, e.g. datetime.now(UTC)",
        )
    return value.astimezone(UTC)


def _enc_any(value: Any, path: Path, omit: bool) -> Any:
    kind = type(value)
    if kind is list or kind is tuple:
        return [_enc_any(item, (*path, i), omit) for i, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedMessage(
                    fmt_path(path), f"map keys must be str, got {wire_name(key)}", value=key
                )
            out[key] = _enc_any(item, (*path, key), omit)
        return out
    if kind is int:
        return _enc_int(value, path, omit)
    if isinstance(value, datetime):
        return encode_datetime(value, path, omit)
    if kind is str:
        return _enc_str(value, path, omit)
    if kind in (bool, float, bytes, type(None)):
        return value
    raise MalformedMessage(fmt_path(path), f"cannot encode a value of type {wire_name(value)}")


_ENCODERS: dict[Any, Encoder] = {
    int: _enc_int,
    str: _enc_str,
    bool: _enc_bool,
    datetime: encode_datetime,
    Any: _enc_any,
    dict: _enc_any,
}


def encoder(tp: Any) -> Encoder:
    """Compile (and cache) a function that checks `tp` values and turns them into msgpack data."""
    cached = _ENCODERS.get(tp)
    if cached is not None:
        return cached
    inner, optional = _split_optional(tp)
    origin = typing.get_origin(tp)
    conv: Encoder
    if optional:
        inner_conv = encoder(inner)

        def conv(value: Any, path: Path, omit: bool) -> Any:
            return None if value is None else inner_conv(value, path, omit)

    elif origin is tuple:
        item_conv = encoder(typing.get_args(tp)[0])

        def conv(value: Any, path: Path, omit: bool) -> Any:
            if type(value) is not tuple and type(value) is not list:
                raise expected(path, "tuple", value)
            return [item_conv(item, (*path, i), omit) for i, item in enumerate(value)]

    elif origin is dict:
        value_conv = encoder(typing.get_args(tp)[1])

        def conv(value: Any, path: Path, omit: bool) -> Any:
            if type(value) is not dict:
                raise expected(path, "dict", value)
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise MalformedMessage(
                        fmt_path(path), f"map keys must be str, got {wire_name(key)}", value=key
                    )
                out[key] = value_conv(item, (*path, key), omit)
            return out

    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        conv = _dataclass_encoder(tp)
    else:
        raise TypeError(f"no encoder for {tp!r}")
    _ENCODERS[tp] = conv
    return conv


def _dataclass_encoder(cls: type) -> Encoder:
    specs = []
    always = {f.name for f in dataclasses.fields(cls) if f.metadata.get("omit_empty")}
    for name, tp, kind, default in _field_specs(cls):
        field_conv = encoder(tp)
        if kind == _DEFAULT:
            wire_default = field_conv(default, (), False)
        elif kind == _FACTORY:
            wire_default = field_conv(default(), (), False)
        else:
            wire_default = _NO_DEFAULT
        specs.append((name, field_conv, wire_default, name in always))
    check = CHECKS.get(cls)

    def conv(value: Any, path: Path, omit: bool) -> Any:
        if type(value) is not cls:
            raise expected(path, cls.__name__, value)
        out: dict[str, Any] = {}
        for name, field_conv, wire_default, omit_empty in specs:
            wire = field_conv(getattr(value, name), (*path, name), omit)
            # Leaving out defaults keeps canonical bytes (and fingerprints) of old sales
            # unchanged when a later version adds a field with a default.
            if (omit or omit_empty) and type(wire) is type(wire_default) and wire == wire_default:
                continue
            out[name] = wire
        if check is not None:
            check(value, path)
        return out

    return conv
