"""An interactive Python session on a database: IPython when installed, else the REPL.

The namespace holds the connected database (``db``), the package (``bl``), the
models, the enums, the service functions and the errors, so that a question
about the data is one line away::

    >>> Order.select().where(Order.status == OrderStatus.PAID).count()
"""

import code
import importlib.util
from typing import Any

import peewee as pw

import bitloot_lite

from ..db import is_postgres


def namespace(database: pw.Database) -> dict[str, Any]:
    """What the session starts with: every public name of bitloot_lite, and ``db``."""
    names = {name: getattr(bitloot_lite, name) for name in bitloot_lite.__all__}
    names.update(db=database, bl=bitloot_lite, pw=pw, fn=pw.fn)
    return names


def banner(database: pw.Database, where: str) -> str:
    """The first lines of the session: which database (``where``: the masked URL)."""
    backend = "PostgreSQL" if is_postgres(database) else "SQLite"
    return (f"bitloot-lite shell on {where} ({backend})\n"
            "In scope: db, bl (bitloot_lite), the models (Order, OrderItem, Key, Payment, "
            "WebhookLog),\nOrderStatus, PaymentStatus, the service functions (create_order, "
            "set_status, ...),\nthe errors, pw (peewee) and fn.\n"
            "Example: Order.select().where(Order.status == OrderStatus.PAID).count()")


def has_ipython() -> bool:
    return importlib.util.find_spec("IPython") is not None


def interact(database: pw.Database, where: str, *, plain: bool = False) -> None:
    """Run the session until the user leaves it (EOF, exit()); IPython unless ``plain``
    or not installed. The models must be bound to ``database`` (``connect``)."""
    names = namespace(database)
    text = banner(database, where)
    if not plain and has_ipython():
        from IPython import start_ipython
        from traitlets.config import Config

        config = Config()
        config.TerminalInteractiveShell.banner1 = text + "\n"
        start_ipython(argv=[], user_ns=names, config=config)
        return
    code.interact(banner=text, local=names, exitmsg="")
