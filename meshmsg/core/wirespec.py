"""Declaring wire records: field specs, the ``@record`` decorator and record schemas.

Theory of operation
-------------------
A *record* is a frozen dataclass with a stable integer type code whose every field is declared
with :func:`wire` and a *field spec*::

    @record(0x03)
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Ping:
        nonce: int = wire(UInt(max=2**64 - 1))

:func:`record` reads the dataclass fields once and stores a :class:`RecordSchema` on the class:
field names in declaration order (the wire order), their specs, and the slot setters used to
build instances quickly when decoding. It also replaces ``__init__`` so that a record built
locally is validated against its specs: a bad local value raises :class:`LocalProtocolError`, so
an invalid record never exists and encoding never needs to re-check it.

A field spec answers three questions about one field: is this local value valid (``check``),
what record value does this decoded CBOR value give (``from_wire``, raising
:class:`DecodeError`), and what CBOR value represents it (``to_wire``: what cbor2 would encode,
and the reference the fast encoder in :mod:`meshmsg.core.wirefast` is tested against). Decoded
values arrive as cbor2 produced them (arrays as tuples) and are narrowed with ``type(x) is ...``
checks: a ``bool`` is never accepted as an integer, a list never as an array.

Reasons: exceeding a :class:`~meshmsg.config.WireLimits` bound is ``TOO_LARGE``; a value outside
its spec (wrong type, out of range, too long for the field) is ``MALFORMED``.

This module does not touch bytes; :mod:`meshmsg.core.wire` is the codec and re-exports all of
this, so users import from there.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Generic, Protocol, TypeAlias, TypeVar, cast

from meshmsg.config import WireLimits
from meshmsg.errors import CloseReason, DecodeError, LocalProtocolError

UINT64_MAX: Final = 2**64 - 1  # largest CBOR major type 0 argument
CBOR_INT_MIN: Final = -(2**64)  # smallest CBOR major type 1 value, -1 - (2^64 - 1)
MAX_TYPE_CODE: Final = 0xFF  # one byte of type code space (see the version policy in wire.py)

_SPEC_KEY: Final = "meshmsg.wire.spec"  # dataclass field metadata key holding the FieldSpec
_SCHEMA_ATTR: Final = "__wire_schema__"  # class attribute holding a record's RecordSchema

T_co = TypeVar("T_co", covariant=True)
R = TypeVar("R", bound="Record")


class Record(Protocol):
    """Any record class instance (a dataclass decorated with :func:`record`)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


# --- Field specs -------------------------------------------------------------------------------


def describe_kind(value: object) -> str:
    """Name the CBOR kind of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a float (floats are not allowed)"
    if isinstance(value, Mapping):
        return "a map (maps are not allowed)"
    names = {bool: "a boolean", int: "an integer", bytes: "a byte string", str: "a text string",
             tuple: "an array", list: "a list (use a tuple)"}  # fmt: skip
    return names.get(type(value), f"a {type(value).__name__} (not allowed)")


def describe_bound(value: int) -> str:
    """An integer bound for docs: the CBOR extremes by name, others in decimal."""
    return {UINT64_MAX: "2^64-1", CBOR_INT_MIN: "-2^64"}.get(value, str(value))


def utf8_len(text: str) -> int:
    """UTF-8 length of ``text``; raises UnicodeEncodeError on lone surrogates."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class FieldSpec(abc.ABC, Generic[T_co]):
    """How one record field is checked, decoded and encoded.

    ``check`` validates a local value (construction: problems become LocalProtocolError);
    ``from_wire`` validates and converts a decoded value (problems become DecodeError).
    """

    __slots__ = ()

    @abc.abstractmethod
    def check(self, value: object) -> str | None:
        """Return what is wrong with a local ``value``, or None if it is valid."""

    @abc.abstractmethod
    def from_wire(self, value: object, limits: WireLimits) -> T_co:
        """Return the field value for a decoded CBOR value, or raise DecodeError."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One-line description for docs and error messages."""

    @property
    def plain(self) -> bool:
        """True if the wire form of a value is the value itself (no nested records inside)."""
        return True

    def to_wire(self, value: object) -> object:
        """Return the CBOR-encodable form of a valid field value."""
        return value

    def _reject(self, value: object) -> DecodeError:
        return DecodeError(self.check(value) or f"invalid value for {self.describe()}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class UInt(FieldSpec[int]):
    """An unsigned integer in ``[0, max]``."""

    max: int = UINT64_MAX

    def __post_init__(self) -> None:
        if not 0 <= self.max <= UINT64_MAX:
            raise LocalProtocolError(f"UInt max must be in [0, 2^64-1], not {self.max}")

    def check(self, value: object) -> str | None:
        if type(value) is not int:
            return f"expected an unsigned integer, got {describe_kind(value)}"
        if not 0 <= value <= self.max:
            return f"{value} is outside [0, {self.max}]"
        return None

    def from_wire(self, value: object, limits: WireLimits) -> int:
        if type(value) is int and 0 <= value <= self.max:
            return value
        raise self._reject(value)

    def describe(self) -> str:
        return f"uint ≤ {describe_bound(self.max)}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Int(FieldSpec[int]):
    """A signed integer in ``[min, max]``."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if not CBOR_INT_MIN <= self.min <= self.max <= UINT64_MAX:
            raise LocalProtocolError("Int bounds must satisfy -2^64 ≤ min ≤ max ≤ 2^64-1")

    def check(self, value: object) -> str | None:
        if type(value) is not int:
            return f"expected an integer, got {describe_kind(value)}"
        if not self.min <= value <= self.max:
            return f"{value} is outside [{self.min}, {self.max}]"
        return None

    def from_wire(self, value: object, limits: WireLimits) -> int:
        if type(value) is int and self.min <= value <= self.max:
            return value
        raise self._reject(value)

    def describe(self) -> str:
        return f"int in [{describe_bound(self.min)}, {describe_bound(self.max)}]"


@dataclasses.dataclass(frozen=True, slots=True)
class Bool(FieldSpec[bool]):
    """CBOR ``true`` or ``false``."""

    def check(self, value: object) -> str | None:
        return None if type(value) is bool else f"expected a boolean, got {describe_kind(value)}"

    def from_wire(self, value: object, limits: WireLimits) -> bool:
        if type(value) is bool:
            return value
        raise self._reject(value)

    def describe(self) -> str:
        return "bool"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Bytes(FieldSpec[bytes]):
    """A byte string of ``min_len`` to ``max_len`` bytes (:meth:`exact` for a fixed length)."""

    max_len: int
    min_len: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.min_len <= self.max_len:
            raise LocalProtocolError("Bytes bounds must satisfy 0 ≤ min_len ≤ max_len")

    @classmethod
    def exact(cls, length: int) -> Bytes:
        """A byte string of exactly ``length`` bytes (a key, a hash, an id)."""
        return cls(min_len=length, max_len=length)

    def check(self, value: object) -> str | None:
        if type(value) is not bytes:
            return f"expected a byte string, got {describe_kind(value)}"
        if not self.min_len <= len(value) <= self.max_len:
            return f"{len(value)} bytes, expected {self._bounds()}"
        return None

    def from_wire(self, value: object, limits: WireLimits) -> bytes:
        if type(value) is bytes:
            if len(value) > limits.max_string_bytes:
                raise too_large(f"byte string of {len(value)} bytes", limits.max_string_bytes)
            if self.min_len <= len(value) <= self.max_len:
                return value
        raise self._reject(value)

    def _bounds(self) -> str:
        if self.min_len == self.max_len:
            return f"exactly {self.max_len}"
        return f"{self.min_len}..{self.max_len}"

    def describe(self) -> str:
        return f"bytes, {self._bounds()} B"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Text(FieldSpec[str]):
    """A UTF-8 text string of at most ``max_bytes`` bytes (encoded length, not characters)."""

    max_bytes: int

    def __post_init__(self) -> None:
        if self.max_bytes < 0:
            raise LocalProtocolError("Text max_bytes must not be negative")

    def check(self, value: object) -> str | None:
        if type(value) is not str:
            return f"expected a text string, got {describe_kind(value)}"
        try:
            size = utf8_len(value)
        except UnicodeEncodeError:
            return "text is not valid Unicode (lone surrogate): it has no UTF-8 encoding"
        return None if size <= self.max_bytes else f"{size} UTF-8 bytes > {self.max_bytes}"

    def from_wire(self, value: object, limits: WireLimits) -> str:
        # cbor2 already refused invalid UTF-8, so encoding back cannot fail here.
        if type(value) is str:
            size = utf8_len(value)
            if size > limits.max_string_bytes:
                raise too_large(f"text string of {size} bytes", limits.max_string_bytes)
            if size <= self.max_bytes:
                return value
        raise self._reject(value)

    def describe(self) -> str:
        return f"text ≤ {self.max_bytes} B"


@dataclasses.dataclass(frozen=True, slots=True)
class ListOf(FieldSpec[tuple[T_co, ...]]):
    """An array of at most ``max_items`` values of ``item``; a tuple in Python (immutable)."""

    item: FieldSpec[T_co]
    _: dataclasses.KW_ONLY
    max_items: int

    def __post_init__(self) -> None:
        if self.max_items < 0:
            raise LocalProtocolError("ListOf max_items must not be negative")

    @property
    def plain(self) -> bool:
        return self.item.plain

    def check(self, value: object) -> str | None:
        if type(value) is not tuple:
            return f"expected a tuple, got {describe_kind(value)}"
        if len(value) > self.max_items:
            return f"{len(value)} items > {self.max_items}"
        for index, element in enumerate(value):
            problem = self.item.check(element)
            if problem is not None:
                return f"item {index}: {problem}"
        return None

    def from_wire(self, value: object, limits: WireLimits) -> tuple[T_co, ...]:
        if type(value) is not tuple:
            raise self._reject(value)
        check_container(len(value), limits)
        if len(value) > self.max_items:
            raise DecodeError(f"{len(value)} items > {self.max_items}")
        item = self.item
        try:
            converted = tuple([item.from_wire(element, limits) for element in value])
        except DecodeError as exc:
            raise DecodeError(f"item: {exc}", reason=exc.reason) from exc
        return converted

    def to_wire(self, value: object) -> object:
        if self.item.plain or type(value) is not tuple:
            return value
        return tuple([self.item.to_wire(element) for element in value])

    def describe(self) -> str:
        return f"list of ≤ {self.max_items} × ({self.item.describe()})"


@dataclasses.dataclass(frozen=True, slots=True)
class Optional(FieldSpec[T_co | None]):
    """``inner`` or CBOR ``null`` (``None``)."""

    inner: FieldSpec[T_co]

    def __post_init__(self) -> None:
        if isinstance(self.inner, Optional):
            raise LocalProtocolError("Optional(Optional(...)) is ambiguous on the wire")

    @property
    def plain(self) -> bool:
        return self.inner.plain

    def check(self, value: object) -> str | None:
        return None if value is None else self.inner.check(value)

    def from_wire(self, value: object, limits: WireLimits) -> T_co | None:
        return None if value is None else self.inner.from_wire(value, limits)

    def to_wire(self, value: object) -> object:
        return None if value is None else self.inner.to_wire(value)

    def describe(self) -> str:
        return f"{self.inner.describe()}, or null"


@dataclasses.dataclass(frozen=True, slots=True)
class Nested(FieldSpec[R]):
    """A record (or :func:`struct`) inside a record.

    Encoded as the array of its fields *without* its type code: the enclosing field spec
    already fixes its type, so a code would be redundant, and a struct has none.
    """

    record: type[R]
    # Looked up once here, not per value: decoding a list of structs builds many.
    schema: RecordSchema = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # schema_of raises LocalProtocolError if not a record or struct.
        object.__setattr__(self, "schema", schema_of(self.record))

    @property
    def plain(self) -> bool:
        return False

    def check(self, value: object) -> str | None:
        if type(value) is self.record:
            return None
        return f"expected a {self.record.__name__}, got {describe_kind(value)}"

    def from_wire(self, value: object, limits: WireLimits) -> R:
        if type(value) is not tuple:
            raise self._reject(value)
        check_container(len(value), limits)
        return cast(R, self.schema.build(value, 0, limits))  # an instance of self.record

    def to_wire(self, value: object) -> object:
        return self.schema.to_wire(value, with_code=False)

    def describe(self) -> str:
        return self.record.__name__


def wire(spec: FieldSpec[T_co]) -> T_co:
    """Declare a record field with its spec: ``nonce: int = wire(UInt(max=2**64 - 1))``.

    Every record field is required (no default): a v1 record always carries all its fields.
    """
    # A dataclasses.Field, typed as the field's value so the annotation is checked against
    # the spec (``nonce: str = wire(UInt())`` fails mypy).
    return cast(T_co, dataclasses.field(metadata={_SPEC_KEY: spec}))


def too_large(what: str, bound: int) -> DecodeError:
    return DecodeError(f"{what} exceeds the limit of {bound}", reason=CloseReason.TOO_LARGE)


def check_container(length: int, limits: WireLimits) -> None:
    if length > limits.max_container_items:
        raise too_large(f"array of {length} items", limits.max_container_items)


_FieldDecoder: TypeAlias = tuple[
    Callable[[object, WireLimits], object],  # the spec's from_wire
    Callable[[object, object], None],  # the slot's __set__ (bypasses the frozen __setattr__)
]


# --- Record schemas and the decorators ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class RecordSchema:
    """Everything the codec knows about one record class, computed once at decoration."""

    record: type[object]
    type_code: int | None  # None for a struct (nested only)
    names: tuple[str, ...]
    specs: tuple[FieldSpec[object], ...]
    decoders: tuple[_FieldDecoder, ...]  # (spec.from_wire, slot setter) per field
    setters: tuple[Callable[[object, object], None], ...]  # slot __set__ per field
    plain: bool  # no field needs conversion in to_wire

    @property
    def name(self) -> str:
        return self.record.__name__

    def build(self, values: tuple[object, ...], first: int, limits: WireLimits) -> object:
        """Decode ``values[first:]`` into a new record (raises DecodeError)."""
        if len(values) - first != len(self.decoders):
            raise DecodeError(
                f"{self.name}: {len(values) - first} fields, expected exactly {len(self.specs)}"
            )
        # from_wire validates each field, so set the slots directly, as the frozen dataclass
        # __init__ does, and skip the construction-time check (it would repeat the same work).
        # This loop is the decoder's hot path: no slicing, no zip, bound methods prepared.
        obj = object.__new__(self.record)
        index = first
        try:
            for decode_field, set_field in self.decoders:
                set_field(obj, decode_field(values[index], limits))
                index += 1
        except DecodeError as exc:
            name = self.names[index - first]
            raise DecodeError(f"{self.name}.{name}: {exc}", reason=exc.reason) from exc
        return obj

    def to_wire(self, obj: object, *, with_code: bool) -> list[object]:
        """Return the CBOR array for a record (with or without its type code)."""
        if type(obj) is not self.record:
            raise LocalProtocolError(f"expected a {self.name}, got {type(obj).__name__}")
        if self.plain:
            values = [getattr(obj, name) for name in self.names]
        else:
            values = [
                s.to_wire(getattr(obj, n)) for n, s in zip(self.names, self.specs, strict=True)
            ]
        if with_code:
            values.insert(0, self.type_code)
        return values


def schema_of(record_class: type[object]) -> RecordSchema:
    """Return the schema of a class decorated with :func:`record` or :func:`struct`."""
    schema = record_class.__dict__.get(_SCHEMA_ATTR)
    if not isinstance(schema, RecordSchema):
        raise LocalProtocolError(f"{record_class.__name__} is not a @record or @struct class")
    return schema


def record(type_code: int) -> Callable[[type[R]], type[R]]:
    """Class decorator: make a frozen dataclass a wire record with a stable ``type_code``.

    Apply it above ``@dataclass(frozen=True, slots=True, kw_only=True)``. Every field must be
    declared with :func:`wire`. Construction validates each field against its spec and raises
    LocalProtocolError on a bad value. Type codes are never reused once published.
    """
    if type(type_code) is not int or not 0 <= type_code <= MAX_TYPE_CODE:
        raise LocalProtocolError(f"type code must be an int in [0, 255], not {type_code!r}")

    def decorate(cls: type[R]) -> type[R]:
        _install(cls, type_code)
        return cls

    return decorate


def struct(cls: type[R]) -> type[R]:
    """Class decorator: a record without a type code, usable only inside :class:`Nested`."""
    _install(cls, None)
    return cls


def _install(cls: type[object], type_code: int | None) -> None:
    if _SCHEMA_ATTR in cls.__dict__:
        raise LocalProtocolError(f"{cls.__name__} is already a wire record")
    params = getattr(cls, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(cls) or getattr(params, "frozen", False) is not True:
        raise LocalProtocolError(f"{cls.__name__}: apply @record above a frozen @dataclass")
    if "__slots__" not in cls.__dict__:
        raise LocalProtocolError(f"{cls.__name__}: records need @dataclass(slots=True)")
    names: list[str] = []
    specs: list[FieldSpec[object]] = []
    decoders: list[_FieldDecoder] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_SPEC_KEY)
        slot = cls.__dict__.get(f.name)
        if not isinstance(spec, FieldSpec):
            raise LocalProtocolError(f"{cls.__name__}.{f.name}: declare it with wire(spec)")
        if not f.kw_only or f.default is not dataclasses.MISSING:
            raise LocalProtocolError(f"{cls.__name__}.{f.name}: must be keyword-only, no default")
        if not isinstance(slot, types.MemberDescriptorType):  # pragma: no cover - slots=True
            raise LocalProtocolError(f"{cls.__name__}.{f.name}: not a slot")
        names.append(f.name)
        specs.append(spec)
        decoders.append((spec.from_wire, slot.__set__))
    schema = RecordSchema(
        record=cls,
        type_code=type_code,
        names=tuple(names),
        specs=tuple(specs),
        decoders=tuple(decoders),
        setters=tuple(setter for _, setter in decoders),
        plain=all(spec.plain for spec in specs),
    )
    setattr(cls, _SCHEMA_ATTR, schema)
    _validate_on_init(cls, schema)


def _validate_on_init(cls: type[object], schema: RecordSchema) -> None:
    """Replace the dataclass __init__ so that every locally built record is valid.

    The replacement checks each keyword argument against its spec and sets its slot, which is
    all the frozen dataclass __init__ does for a record (no defaults, no __post_init__), in one
    pass instead of an __init__ and a second pass of checks. Any other set of arguments goes to
    the dataclass __init__, so a missing or unexpected one raises its usual TypeError.
    """
    raw_init: Callable[..., None] = cls.__init__
    if hasattr(cls, "__post_init__"):
        raise LocalProtocolError(f"{cls.__name__}: a record cannot have __post_init__")
    expected = frozenset(schema.names)
    checks = [spec.check for spec in schema.specs]
    plan = tuple(zip(schema.names, checks, schema.setters, strict=True))

    @functools.wraps(raw_init)
    def __init__(self: object, **fields: object) -> None:
        if fields.keys() != expected:
            raw_init(self, **fields)  # raises TypeError naming the missing or extra argument
        for name, check, set_field in plan:
            value = fields[name]
            problem = check(value)
            if problem is not None:
                raise LocalProtocolError(f"{schema.name}.{name}: {problem}")
            set_field(self, value)

    setattr(cls, "__init__", __init__)  # noqa: B010 - mypy forbids assigning a method


def schema_of_instance(obj: object) -> RecordSchema | None:
    """Return the schema of ``obj``'s own class (not inherited), or None."""
    schema = type(obj).__dict__.get(_SCHEMA_ATTR)
    return schema if isinstance(schema, RecordSchema) else None
