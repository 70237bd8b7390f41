"""Input validation for the service layer: every value is checked before anything is written.

Each checker returns the value to write (normalised where the database would
normalise it anyway, e.g. ids) or raises ``ValidationError(field, value, reason)``.
Text is refused, never altered: what passes is stored and read back unchanged
on both backends.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum as _enum
import ipaddress
import math
import re
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from .errors import ValidationError
from .fields import json_text, utcnow
from .models import OrderStatus, PaymentStatus

if TYPE_CHECKING:
    from ._typing import Amount
    from .fields import MoneyField
    from .models import BaseModel

S = TypeVar("S", bound=_enum.Enum)

#: orders may hold at most this many items: one multi-row INSERT writes them all.
MAX_ITEMS = 1000
#: An object-storage key (S3 allows 1024 bytes; we count characters, the stricter for ASCII).
MAX_STORAGE_REF = 1024
#: PostgreSQL's ``integer``.
MAX_INT = 2**31 - 1

# What PostgreSQL and SQLite cannot both store and give back: NUL, and lone
# surrogates (not encodable as UTF-8). Identifiers also refuse C0/C1 control
# characters and leading/trailing whitespace. One regex search on the fast path.
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_BAD_IDENTIFIER = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]|\A\s|\s\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# local@domain.tld, no whitespace or second "@"; deliberately loose beyond that.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+")
_JSON_DEPTH = 64


@overload
def text(field: str, value: object, max_length: int | None = None, *,
         required: Literal[True] = True, identifier: bool = True) -> str: ...
@overload
def text(field: str, value: object, max_length: int | None = None, *,
         required: bool = True, identifier: bool = True) -> str | None: ...
def text(field: str, value: object, max_length: int | None = None, *, required: bool = True,
         identifier: bool = True) -> str | None:
    """A string PostgreSQL and SQLite both store unchanged (no NUL, no lone surrogate).

    An identifier must also be non-empty, free of control characters and of
    leading/trailing whitespace (a trailing space makes a different product id).
    """
    if type(value) is not str:
        if value is None and not required:
            return None
        if not isinstance(value, str):
            kind = type(value).__name__
            reason = "is required" if value is None else f"must be a string, not {kind}"
            raise ValidationError(field, value, reason)
        value = str.__str__(value)  # a str subclass (e.g. a str Enum) as the plain text it holds
    if ((max_length is not None and len(value) > max_length) or (identifier and not value)
            or (_BAD_IDENTIFIER if identifier else _BAD_TEXT).search(value)):
        raise ValidationError(field, value, _text_fault(value, max_length))
    return value


def _text_fault(value: str, max_length: int | None) -> str:
    """Why ``text`` refused ``value`` (off the fast path)."""
    if max_length is not None and len(value) > max_length:
        return f"is longer than {max_length} characters"
    if "\x00" in value:
        return "contains a NUL character, which PostgreSQL cannot store"
    if re.search(r"[\ud800-\udfff]", value):
        return "is not valid Unicode (it holds a lone surrogate)"
    if not value:
        return "must not be empty"
    if _CONTROL.search(value):
        return "contains a control character"
    return "has leading or trailing whitespace"


#: An email ``text`` would pass and _EMAIL match, in one regex: the fast path.
_PLAIN_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,64}@"
                          r"[^@\s.\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
                          r"(?:\.[^@\s.\x00-\x1f\x7f-\x9f\ud800-\udfff]+)+")


def email(value: Any) -> str:
    if type(value) is str and len(value) <= 320 and _PLAIN_EMAIL.fullmatch(value):
        return value
    text("email", value, 320)
    if not _EMAIL.fullmatch(value):
        raise ValidationError("email", value, "is not an email address (local@domain.tld)")
    return cast(str, value)  # text() refused anything else


def integer(field: str, value: object, minimum: int = 1) -> int:
    """An int (not a bool) between ``minimum`` and PostgreSQL's integer maximum."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, value, f"must be an integer, not {type(value).__name__}")
    if not minimum <= value <= MAX_INT:
        raise ValidationError(field, value, f"must be between {minimum} and {MAX_INT}")
    return value


@overload
def money(field: str, value: Amount, model_field: MoneyField[Any]) -> str: ...
@overload
def money(field: str, value: object, model_field: MoneyField[Any]) -> str | None: ...
def money(field: str, value: object, model_field: MoneyField[Any]) -> str | None:
    """A non-negative amount as ``model_field`` writes it (numeric(20,8); 15 digits on SQLite).

    Floats are refused: 0.1 is not 0.1, and money must be exact.
    """
    if value is None:
        return None
    if isinstance(value, (bool, float)) or not isinstance(value, (int, str, decimal.Decimal)):
        kind = type(value).__name__
        raise ValidationError(field, value, f"must be a Decimal, int or str, not {kind}")
    try:
        amount = decimal.Decimal(value)
    except (decimal.InvalidOperation, ValueError):
        raise ValidationError(field, value, "is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValidationError(field, value, "must be a finite amount of 0 or more")
    try:
        return cast(str, model_field.db_value(amount))
    except (ValueError, ArithmeticError) as exc:
        reason = str(exc)
    raise ValidationError(field, value, reason)


def json_value(field: str, value: object, *, required: bool = True) -> str | None:
    """``value`` serialised as the JSON columns store it; it must read back equal."""
    if value is None:
        if required:  # JSON null would be storable, but a missing payload is a bug
            raise ValidationError(field, value, "is required")
        return None
    _check_json(field, value, 0)
    try:
        return json_text(value)
    except ValueError as exc:  # e.g. an int of more digits than Python will convert
        reason = f"cannot be written as JSON: {str(exc).split(';')[0]}"
    raise ValidationError(field, value, reason)


def _check_json(field: str, value: object, depth: int) -> None:
    if depth > _JSON_DEPTH:
        raise ValidationError(field, value, f"is nested deeper than {_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, value, "holds NaN or infinity, which JSON cannot")
    elif isinstance(value, str):
        text(field, value, identifier=False)
    elif isinstance(value, list):
        for element in value:
            _check_json(field, element, depth + 1)
    elif isinstance(value, dict):
        for key, element in value.items():
            if not isinstance(key, str):
                # json.dumps would turn 1 into "1": it would not read back equal.
                raise ValidationError(field, key, "has a key that is not a string")
            text(field, key, identifier=False)
            _check_json(field, element, depth + 1)
    else:
        raise ValidationError(field, value, f"holds a {type(value).__name__}, not a JSON value")


@overload
def seconds(field: str, value: float, *, finite: bool = True) -> float: ...
@overload
def seconds(field: str, value: object, *, finite: bool = True) -> float | None: ...
def seconds(field: str, value: object, *, finite: bool = True) -> float | None:
    """A duration in seconds: an int or float (not a bool), 0 or more; None passes.

    ``finite=False`` also lets infinity through (no limit).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, value, f"must be a number of seconds, not "
                                            f"{type(value).__name__}")
    if math.isnan(value) or value < 0 or (finite and math.isinf(value)):
        raise ValidationError(field, value, "must be a finite number of seconds, 0 or more"
                              if finite else "must be a number of seconds, 0 or more")
    return value


def boolean(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, value, f"must be True or False, not {type(value).__name__}")
    return value


@overload
def status(value: object) -> OrderStatus: ...
@overload
def status(value: object, enum: type[S], field: str = "status") -> S: ...
def status(value: object, enum: type[_enum.Enum] = OrderStatus,
           field: str = "status") -> _enum.Enum:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
    raise ValidationError(field, value, f"is not one of {allowed}")


def payment_status(value: object) -> PaymentStatus:
    return status(value, PaymentStatus)


def model_id(field: str, model: type[BaseModel], value: object) -> str:
    """The canonical id (dashed lower-case UUID text) of a ``model`` instance or id."""
    if isinstance(value, model):
        value = value.id
        if value is None:
            raise ValidationError(field, value, f"this {model.__name__} was never saved")
    elif hasattr(value, "_meta"):
        raise ValidationError(
            field, value, f"expected a {model.__name__} or its id, got a {type(value).__name__}"
        )
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    name = model.__name__
    raise ValidationError(field, value, f"is not a {name} or a {name} id (a UUID)")


def _plain(value: object, max_length: int) -> bool:
    """Whether ``text`` passes identifier ``value`` as it is: the fast path of hot loops."""
    return (type(value) is str and 0 < len(value) <= max_length
            and not _BAD_IDENTIFIER.search(value))


def items(value: object) -> list[tuple[str, int]]:
    """[(product_id, quantity), ...] from pairs or {"product_id", "quantity"} dicts."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValidationError("items", value,
                              "must be a list of (product_id, quantity) pairs or dicts")
    lines: list[tuple[str, int]] = []
    for item in value:
        if len(lines) == MAX_ITEMS:
            raise ValidationError("items", value, f"an order holds at most {MAX_ITEMS} items")
        if type(item) is tuple and len(item) == 2:
            product, quantity = item
            if _plain(product, 100) and type(quantity) is int and 0 < quantity <= MAX_INT:
                lines.append(item)
                continue
        lines.append(_item(f"items[{len(lines)}]", item))
    if not lines:
        raise ValidationError("items", value, "an order needs at least one item")
    return lines


def _item(where: str, item: object) -> tuple[str, int]:
    """One item, checked field by field (dicts, lists, and every refusal)."""
    if isinstance(item, dict):
        unknown = sorted(map(str, set(item) - {"product_id", "quantity"}))
        if unknown:
            raise ValidationError(where, item, f"unknown key(s): {', '.join(unknown)}")
        product, quantity = item.get("product_id"), item.get("quantity", 1)
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        product, quantity = item
    else:
        raise ValidationError(where, item, "must be a (product_id, quantity) pair or a dict")
    return text(f"{where}.product_id", product, 100), integer(f"{where}.quantity", quantity)


def storage_refs(value: object) -> list[str]:
    """A list of distinct object-storage keys (never key material)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ValidationError("storage_refs", value, "must be a list of storage references")
    refs = list(value)
    if not refs:
        raise ValidationError("storage_refs", refs, "must hold at least one storage reference")
    search = _BAD_IDENTIFIER.search
    for ref in refs:  # the fast path, inline: restocks check thousands
        if type(ref) is not str or not 0 < len(ref) <= MAX_STORAGE_REF or search(ref):
            refs = [text(f"storage_refs[{i}]", ref, MAX_STORAGE_REF) for i, ref in enumerate(refs)]
            break
    if len(set(refs)) != len(refs):  # each reference is one key: two rows would sell it twice
        seen, repeated = set(), {}
        for ref in refs:
            if ref in seen:
                repeated[ref] = None
            seen.add(ref)
        raise ValidationError("storage_refs", list(repeated),
                              f"lists {_some(repeated)} more than once; nothing was written")
    return refs


def _some(refs: Iterable[str], shown: int = 5) -> str:
    """Up to ``shown`` of ``refs``, quoted, and how many more."""
    refs = list(refs)
    text = ", ".join(repr(ref) for ref in refs[:shown])
    return text + (f" and {len(refs) - shown} more" if len(refs) > shown else "")


def cutoff(field: str, value: object) -> dt.datetime:
    """A naive UTC datetime from a datetime (naive = UTC) or an age (timedelta)."""
    try:
        if isinstance(value, dt.timedelta):
            if value < dt.timedelta(0):
                raise ValidationError(field, value, "must not be negative")
            value = utcnow() - value
        if not isinstance(value, dt.datetime):
            raise ValidationError(field, value, "must be a datetime or a timedelta")
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except OverflowError:  # an age reaching back before year 1, or its UTC time would
        reason = "is out of range (before year 1 or after year 9999 in UTC)"
    else:
        return value
    raise ValidationError(field, value, reason)


def ip_address(field: str, value: Any) -> str | None:
    """An IPv4 or IPv6 address (sourceIp is varchar(45)), stored as given."""
    if value is None:
        return None
    text(field, value, 45)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError(field, value, "is not an IP address") from None
    return cast(str, value)  # text() refused anything else
