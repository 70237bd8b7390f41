"""bitloot-lite: the order and fulfilment data layer of BitLoot (peewee + peewee-migrate)."""

from typing import TYPE_CHECKING, Any

from ._typing import Amount, ItemDict, OrderStatusName, PaymentFields, PaymentStatusName
from .db import connect, mask_url
from .errors import (
    AdoptionError,
    BitlootError,
    ConfigurationError,
    ConflictError,
    CopyMismatch,
    DatabaseBusy,
    DatabaseFull,
    DatabaseNotEmpty,
    DatabaseNotFound,
    DatabaseUnavailable,
    DuplicateKeys,
    EditedMigration,
    GrantFailed,
    InvalidDatabaseURL,
    InvalidMigration,
    InvalidMigrationFiles,
    InvalidPaymentTransition,
    InvalidTransition,
    IrreversibleMigration,
    KeysMissing,
    LinterFailed,
    LinterUnavailable,
    LockTimeout,
    LockUntrusted,
    MigrationError,
    MigrationFailed,
    MigrationsNotFound,
    ModelsNotFound,
    NeedsBaseline,
    NotFound,
    NothingToRollback,
    NotMigrated,
    OrderNotPaid,
    OutOfOrder,
    PaymentConflict,
    PrivilegeMissing,
    ReadOnlyServer,
    ReservationConflict,
    ScratchUnavailable,
    ServerRefused,
    SourceAhead,
    StorageError,
    TooManyKeys,
    TransactionLost,
    UnknownMigration,
    ValidationError,
)
from .models import Key, Order, OrderItem, OrderStatus, Payment, PaymentStatus, WebhookLog
from .replicas import from_replica, read_database
from .services import (
    add_keys,
    attach_reservation,
    create_order,
    find_order_by_reservation,
    keys_for_order,
    record_payment,
    record_webhook,
    reveal_key,
    set_status,
    unviewed_keys,
)

__version__ = "0.1.0"

#: Imported on first use: the migration machinery (peewee-migrate, which imports
#: unittest.mock and asyncio) doubles the import time of a script that never migrates.
_MIGRATING = ("migrate", "pending", "rollback", "status")


if TYPE_CHECKING:  # what the lazy __getattr__ below hands out, as checkers should see it
    from .migrating import migrate, pending, rollback, status
else:  # hidden from checkers, to whom any unknown name would then be Any, not an error

    def __getattr__(name: str) -> Any:
        if name in _MIGRATING:
            from . import migrating

            return getattr(migrating, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AdoptionError",
    "BitlootError",
    "ConfigurationError",
    "ConflictError",
    "CopyMismatch",
    "DatabaseBusy",
    "DatabaseFull",
    "DatabaseNotEmpty",
    "DatabaseNotFound",
    "DatabaseUnavailable",
    "DuplicateKeys",
    "EditedMigration",
    "GrantFailed",
    "InvalidDatabaseURL",
    "InvalidMigration",
    "InvalidMigrationFiles",
    "InvalidPaymentTransition",
    "InvalidTransition",
    "IrreversibleMigration",
    "Key",
    "KeysMissing",
    "LinterFailed",
    "LinterUnavailable",
    "LockTimeout",
    "LockUntrusted",
    "MigrationError",
    "MigrationFailed",
    "MigrationsNotFound",
    "ModelsNotFound",
    "NeedsBaseline",
    "NotFound",
    "NotMigrated",
    "NothingToRollback",
    "Order",
    "OrderItem",
    "OrderNotPaid",
    "OrderStatus",
    "OutOfOrder",
    "Payment",
    "PaymentConflict",
    "PaymentStatus",
    "PrivilegeMissing",
    "ReadOnlyServer",
    "ReservationConflict",
    "ScratchUnavailable",
    "ServerRefused",
    "SourceAhead",
    "StorageError",
    "TooManyKeys",
    "TransactionLost",
    "UnknownMigration",
    "ValidationError",
    "WebhookLog",
    "add_keys",
    "attach_reservation",
    "connect",
    "create_order",
    "find_order_by_reservation",
    "from_replica",
    "keys_for_order",
    "mask_url",
    "migrate",
    "pending",
    "read_database",
    "record_payment",
    "record_webhook",
    "reveal_key",
    "rollback",
    "set_status",
    "status",
    "unviewed_keys",
    # Types for annotating scripts (issue 13).
    "Amount",
    "ItemDict",
    "OrderStatusName",
    "PaymentFields",
    "PaymentStatusName",
]
