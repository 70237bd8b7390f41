"""Field types that read and write the same values on SQLite and PostgreSQL."""

import datetime as dt
import decimal
import json
import uuid

import peewee as pw


def utcnow():
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


class UUIDField(pw.UUIDField):
    """A UUID stored in its canonical dashed form (uuid on PostgreSQL, text on SQLite).

    peewee's own UUIDField writes 32 hex digits on SQLite, which would not
    match the dashed ids the database's default expression generates.
    """

    field_type = "UUID"

    def db_value(self, value):
        if value is None or isinstance(value, pw.Node):
            return value
        if not isinstance(value, uuid.UUID):
            value = uuid.UUID(str(value))
        return str(value)


class UTCDateTimeField(pw.DateTimeField):
    """A ``timestamp without time zone`` column holding UTC.

    Aware datetimes are converted to UTC on the way in; naive ones are taken
    to be UTC already. Values come back aware, in UTC.
    """

    def db_value(self, value):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class MoneyField(pw.DecimalField):
    """numeric(20,8): a Decimal, stored exactly.

    On SQLite the column is TEXT: a NUMERIC column there would round the value
    to a 15-digit float, and numeric(20,8) holds 20 digits.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 20)
        kwargs.setdefault("decimal_places", 8)
        super().__init__(**kwargs)

    def db_value(self, value):
        if value is None or isinstance(value, pw.Node):
            return value
        value = decimal.Decimal(str(value)) if not isinstance(value, decimal.Decimal) else value
        return str(value)


class EnumField(pw.CharField):
    """A Python enum stored by value (a PostgreSQL enum, or text with a CHECK on SQLite)."""

    def __init__(self, enum, **kwargs):
        self.enum = enum
        kwargs.setdefault("max_length", max(len(m.value) for m in enum))
        super().__init__(**kwargs)

    def db_value(self, value):
        if value is None or isinstance(value, pw.Node):
            return value
        return self.enum(value).value

    def python_value(self, value):
        return None if value is None else self.enum(value)


class JSONField(pw.Field):
    """jsonb on PostgreSQL, JSON text on SQLite; any JSON value round-trips."""

    field_type = "JSON"

    def db_value(self, value):
        if value is None or isinstance(value, pw.Node):
            return value
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def python_value(self, value):
        # psycopg2 decodes jsonb itself; SQLite hands back the text.
        if isinstance(value, str) and not self._decoded_by_driver():
            return json.loads(value)
        return value

    def _decoded_by_driver(self):
        database = self.model._meta.database
        database = getattr(database, "obj", database)
        return isinstance(database, pw.PostgresqlDatabase)
