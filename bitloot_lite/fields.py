"""Field types that read and write the same values on SQLite and PostgreSQL."""

import datetime as dt
import decimal
import enum as _enum
import json
import uuid
from typing import Any

import peewee as pw

from ._typing import Typed, V
from .db import is_postgres


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


class UUIDField(Typed[V], pw.UUIDField):
    """A UUID stored in its canonical dashed form (uuid on PostgreSQL, text on SQLite).

    peewee's own UUIDField writes 32 hex digits on SQLite, which would not
    match the dashed ids the database's default expression generates.
    """

    field_type = "UUID"

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, pw.Node):
            return value
        if not isinstance(value, uuid.UUID):
            value = uuid.UUID(str(value))
        return str(value)


class UTCDateTimeField(Typed[V], pw.DateTimeField):
    """A ``timestamp without time zone`` column holding UTC.

    Aware datetimes are converted to UTC on the way in; naive ones are taken
    to be UTC already. Values come back aware, in UTC.
    """

    def db_value(self, value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return super().db_value(value)  # type: ignore[no-untyped-call]

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)  # type: ignore[no-untyped-call]
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class MoneyField(Typed[V], pw.DecimalField):
    """numeric(20,8): a Decimal rounded to 8 places (half away from zero, as PostgreSQL).

    A value with more than 12 digits before the point is refused, as PostgreSQL
    refuses it. On SQLite the column is NUMERIC, which holds a decimal as a
    64-bit float: compared, sorted and summed as a number, and exact to 15
    significant digits; a value that would not come back unchanged is refused
    there rather than silently rounded.
    """

    SQLITE_DIGITS = 15

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 20)
        kwargs.setdefault("decimal_places", 8)
        super().__init__(**kwargs)
        # Made once: building them took most of the time of a conversion.
        self._quantum = decimal.Decimal(1).scaleb(-self.decimal_places)
        self._context = decimal.Context(prec=self.max_digits + 1)

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, pw.Node):
            return value
        value = self._quantize(value)
        digits = len(value.normalize().as_tuple().digits)
        if digits > self.SQLITE_DIGITS and not is_postgres(self.model._meta.database):
            raise ValueError(f"{value} has more than {self.SQLITE_DIGITS} significant digits, "
                             "which SQLite cannot store exactly")
        return str(value)

    def python_value(self, value: Any) -> decimal.Decimal | None:
        return None if value is None else self._quantize(value)

    def _quantize(self, value: object) -> decimal.Decimal:
        if not isinstance(value, decimal.Decimal):
            value = decimal.Decimal(str(value))
        integer_digits = self.max_digits - self.decimal_places
        if value.is_finite() and value.adjusted() < integer_digits:
            value = value.quantize(self._quantum, rounding=decimal.ROUND_HALF_UP,
                                   context=self._context)
        if not value.is_finite() or value.adjusted() >= integer_digits:
            raise ValueError(
                f"{value} does not fit numeric({self.max_digits},{self.decimal_places})"
            )
        return value


class EnumField(Typed[V], pw.CharField):
    """A Python enum stored by value (a PostgreSQL enum, or text with a CHECK on SQLite)."""

    def __init__(self, enum: type[_enum.Enum], **kwargs: Any) -> None:
        self.enum = enum
        kwargs.setdefault("max_length", max(len(m.value) for m in enum))
        super().__init__(**kwargs)

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, pw.Node):
            return value
        return self.enum(value).value

    def python_value(self, value: Any) -> _enum.Enum | None:
        return None if value is None else self.enum(value)


def json_text(value: Any) -> str:
    """``value`` as the JSON text our columns store: compact, and such that it reads
    back equal on both backends.

    A float that Python writes with a positive exponent (``1e+23``, ``6.6e+16``)
    would come back from a jsonb column as an int: jsonb stores a numeric and
    prints it positionally, ``100000000000000000000000``, which json.loads reads
    as an int that is not equal to the float. Written positionally with a
    fractional part (``100000000000000000000000.0``), jsonb keeps that scale and
    the value reads back as the same float. Everything else is json.dumps' text.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if "e+" not in text:  # no such float (a string holding "e+" takes the slow path, too)
        return text
    return _json_text(value)


def _json_text(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        if "e+" in text:  # finite: json_value refuses NaN and infinities
            return f"{decimal.Decimal(text):f}.0"
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key, ensure_ascii=False)}:{_json_text(element)}"
                              for key, element in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_text(element) for element in value) + "]"
    return json.dumps(value, ensure_ascii=False)


class JSONField(Typed[V], pw.Field):
    """jsonb on PostgreSQL, JSON text on SQLite; any JSON value round-trips (see json_text)."""

    field_type = "JSON"

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, pw.Node):
            return value
        return json_text(value)

    def python_value(self, value: Any) -> Any:
        # psycopg2 decodes jsonb itself; SQLite hands back the text.
        if isinstance(value, str) and not is_postgres(self.model._meta.database):
            return json.loads(value)
        return value
