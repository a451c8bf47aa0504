"""Leaf module: frozen records validated from plain data (TOML, JSON, keyword arguments), in the
standard library. It must not import anything of acpd's.

``config`` declares its models with the part of pydantic's vocabulary it needs (``Field`` with a
default or a factory, an alias and a ``gt``/``ge`` bound; ``model_validator(mode="after")``;
``model_validate``, ``model_copy``, ``model_dump``). Importing pydantic and building those models
was a third of the daemon's start-up (~130 ms) and a quarter of its idle memory (~13 MiB), for
seven small records.

Validation is strict where data has a type of its own (a string is no number), except that an
integer is a fine float and a whole float a fine integer. Every field may be given by name or by
alias; an unknown one is refused. Errors are ``InvalidRecord`` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, dataclass_transform, get_args, get_origin

T = TypeVar("T")
R = TypeVar("R", bound="Record")
_MISSING: Any = object()
_AFTER = "__record_after__"


class InvalidRecord(ValueError):
    """Data that does not make the record: a wrong type, an unknown or missing field, a bound."""


@dataclass(frozen=True, slots=True)
class _Spec:
    default: Any = _MISSING
    default_factory: Callable[[], Any] | None = None
    alias: str | None = None
    gt: float | None = None
    ge: float | None = None


def Field(
    default: Any = _MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    alias: str | None = None,
    gt: float | None = None,
    ge: float | None = None,
) -> Any:
    """A field's default (or factory), alias and bound."""
    return _Spec(default, default_factory, alias, gt, ge)


def model_validator(*, mode: Literal["after"]) -> Callable[[T], T]:
    """Mark a method that checks the whole record once its fields are set (it raises ``ValueError``)."""

    def mark(method: T) -> T:
        setattr(method, _AFTER, True)
        return method

    return mark


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str
    """How data and errors name it: its alias, else its name."""
    type: Any
    spec: _Spec

    def initial(self) -> Any:
        if self.spec.default_factory is not None:
            return self.spec.default_factory()
        if self.spec.default is _MISSING:
            raise InvalidRecord(f"{self.key}: required")
        return self.spec.default


# Not ``field_specifiers=(Field,)``: type checkers would then take an alias for the only name a
# field may be given by, where acpd's own code passes names.
@dataclass_transform(kw_only_default=True, frozen_default=True)
class Record:
    """Base of a frozen record: subclasses declare annotated fields with defaults or ``Field``."""

    _fields: ClassVar[dict[str, _Field]]
    _keys: ClassVar[dict[str, str]]

    def __init__(self, **data: Any) -> None:
        fields, keys = _fields_of(type(self))
        given: dict[str, Any] = {}
        for key, value in data.items():
            name = keys.get(key)
            if name is None:
                raise InvalidRecord(f"{key}: unknown field of {type(self).__name__}")
            given[name] = value
        for name, field in fields.items():
            value = given[name] if name in given else field.initial()
            object.__setattr__(self, name, _checked(field, value))
        for check in _after_checks(type(self)):
            check(self)

    @classmethod
    def model_validate(cls: type[R], data: object) -> R:
        """The record ``data`` (a mapping, or already one) makes."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data):
            raise InvalidRecord(f"{cls.__name__} must be an object, not {type(data).__name__}")
        return cls(**data)

    def model_copy(self: R, *, update: Mapping[str, Any] | None = None) -> R:
        """This record with ``update`` (by field name) applied, checked again."""
        return type(self)(**{**self._values(), **(update or {})})

    def model_dump(self, *, by_alias: bool = False) -> dict[str, Any]:
        """Plain data: nested records as dicts."""
        fields, _ = _fields_of(type(self))
        return {
            (field.key if by_alias else name): _dumped(getattr(self, name), by_alias) for name, field in fields.items()
        }

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _fields_of(type(self))[0]}

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), *_hashable(self._values())))

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self._values().items())
        return f"{type(self).__name__}({values})"


def _hashable(values: dict[str, Any]) -> Iterator[object]:
    for value in values.values():
        yield tuple(sorted(value.items())) if isinstance(value, Mapping) else value


def _dumped(value: Any, by_alias: bool) -> Any:
    if isinstance(value, Record):
        return value.model_dump(by_alias=by_alias)
    if isinstance(value, Mapping):
        return {key: _dumped(item, by_alias) for key, item in value.items()}
    return value


def _fields_of(cls: type[Record]) -> tuple[dict[str, _Field], dict[str, str]]:
    """The record's fields (resolved once per class: annotations are strings until asked)."""
    if "_fields" not in cls.__dict__:
        hints = typing.get_type_hints(cls)
        fields: dict[str, _Field] = {}
        for klass in reversed(cls.__mro__):
            for name in inspect.get_annotations(klass):
                if name.startswith("_") or get_origin(hints[name]) is ClassVar:
                    continue
                declared = cls.__dict__.get(name, getattr(cls, name, _MISSING))
                spec = declared if isinstance(declared, _Spec) else _Spec(default=declared)
                fields[name] = _Field(name, spec.alias or name, hints[name], spec)
        keys = {name: name for name in fields} | {field.key: name for name, field in fields.items()}
        type.__setattr__(cls, "_fields", fields)
        type.__setattr__(cls, "_keys", keys)
    return cls._fields, cls._keys


def _after_checks(cls: type[Record]) -> list[Callable[[Any], object]]:
    checks: dict[str, Callable[[Any], object]] = {}
    for klass in reversed(cls.__mro__):
        checks.update({name: member for name, member in vars(klass).items() if getattr(member, _AFTER, False)})
    return list(checks.values())


def _checked(field: _Field, value: object) -> Any:
    try:
        checked = _as(field.type, value)
    except InvalidRecord as exc:
        raise InvalidRecord(f"{field.key}: {exc}") from None
    spec = field.spec
    if isinstance(checked, int | float) and not isinstance(checked, bool):
        if spec.gt is not None and not checked > spec.gt:
            raise InvalidRecord(f"{field.key}: must be greater than {spec.gt:g}, not {checked!r}")
        if spec.ge is not None and not checked >= spec.ge:
            raise InvalidRecord(f"{field.key}: must be at least {spec.ge:g}, not {checked!r}")
    return checked


def _as(kind: Any, value: object) -> Any:
    """``value`` as the annotation ``kind`` says, or ``InvalidRecord``."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        return _as_union(args, value)
    if origin is Literal:
        if value in args and any(type(value) is type(arg) for arg in args):
            return value
        raise InvalidRecord(f"must be one of {', '.join(repr(arg) for arg in args)}, not {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list | tuple):
            raise InvalidRecord(f"must be a list, not {type(value).__name__}")
        return tuple(_as(args[0], item) for item in value)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise InvalidRecord(f"must be an object, not {type(value).__name__}")
        return {_as(args[0], key): _as(args[1], item) for key, item in value.items()}
    if isinstance(kind, type) and issubclass(kind, Record):
        return kind.model_validate(value)
    return _as_scalar(kind, value)


def _as_union(args: tuple[Any, ...], value: object) -> Any:
    if value is None and type(None) in args:
        return None
    problems = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _as(arg, value)
        except InvalidRecord as exc:
            problems.append(str(exc))
    raise InvalidRecord("; or ".join(problems))  # null, where allowed, needs no saying: it was not given


def _as_scalar(kind: Any, value: object) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is type(None):
        if value is None:
            return None
    else:
        raise TypeError(f"a record field cannot be of type {kind!r}")  # a programming error
    raise InvalidRecord(f"must be {_NAMES.get(kind, kind)}, not {value!r}")


_NAMES: dict[object, str] = {
    bool: "true or false",
    int: "a number",
    float: "a number",
    str: "a string",
    type(None): "null",
}
