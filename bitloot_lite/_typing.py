"""Typing-only helpers: what the custom Fields read and write, as checkers see it.

peewee 4.5 ships stubs in which every Field is generic in the value it reads
(``CharField[str]``, ``IntegerField[int | None]``); ``Typed[V]`` gives our own
Fields (fields.py) the same, so that ``order.status`` is an ``OrderStatus`` and
``order.total`` a ``Decimal``. At run time it is erased from the class bases
(``__mro_entries__``), so the Fields' MRO is exactly peewee's.
"""

import decimal
import os
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypedDict, TypeVar, overload

V = TypeVar("V")

#: An OrderStatus by its value: a service takes either (tests/test_typing.py keeps them equal).
OrderStatusName = Literal["created", "waiting", "confirming", "paid", "underpaid", "failed",
                          "fulfilled"]
#: A PaymentStatus by its value.
PaymentStatusName = Literal["created", "waiting", "confirmed", "finished", "underpaid", "failed"]

#: A folder, as a str or a Path.
StrPath = str | os.PathLike[str]

#: An amount of money: exact, so never a float.
Amount = decimal.Decimal | int | str


class _ItemRequired(TypedDict):
    product_id: str


class ItemDict(_ItemRequired, total=False):
    """An order item as a dict (``create_order``); quantity defaults to 1."""

    quantity: int


class PaymentFields(TypedDict, total=False):
    """The fields ``record_payment`` takes by keyword."""

    provider: str
    price_amount: Amount | None
    price_currency: str | None
    pay_amount: Amount | None
    pay_currency: str | None
    confirmations: int
    raw_payload: Any


class Cursor(Protocol):
    """The DB-API cursor a statement returns (sqlite3's or psycopg2's)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def execute(self, sql: str, parameters: Any = (), /) -> object: ...

if TYPE_CHECKING:
    from typing_extensions import Self

    class Typed(Generic[V]):
        """A descriptor reading and writing ``V`` on instances, itself on the class."""

        @overload
        def __get__(self, instance: None, owner: Any) -> Self: ...
        @overload
        def __get__(self, instance: object, owner: Any) -> V: ...
        def __get__(self, instance: object, owner: Any) -> "Self | V": ...
        def __set__(self, instance: object, value: V) -> None: ...

else:

    class _Erased:
        """``Typed[V]`` in a class's bases at run time: it leaves no trace there."""

        def __getitem__(self, item):
            return self

        def __mro_entries__(self, bases):
            return ()

    Typed = _Erased()
