"""Typing-only helpers: what the custom Fields read and write, as checkers see it.

peewee 4.5 ships stubs in which every Field is generic in the value it reads
(``CharField[str]``, ``IntegerField[int | None]``); ``Typed[V]`` gives our own
Fields (fields.py) the same, so that ``order.status`` is an ``OrderStatus`` and
``order.total`` a ``Decimal``. At run time it is erased from the class bases
(``__mro_entries__``), so the Fields' MRO is exactly peewee's.
"""

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

V = TypeVar("V")

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
