"""bitloot-lite: the order and fulfilment data layer of BitLoot (peewee + peewee-migrate)."""

from .db import connect, mask_url
from .errors import (
    BitlootError,
    ConfigurationError,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    MigrationError,
    MigrationFailed,
    MigrationsNotFound,
    NothingToRollback,
    UnknownMigration,
)
from .migrating import migrate, pending, rollback, status
from .models import Key, Order, OrderItem, OrderStatus, Payment, PaymentStatus, WebhookLog

__version__ = "0.1.0"

__all__ = [
    "BitlootError",
    "ConfigurationError",
    "DatabaseUnavailable",
    "InvalidDatabaseURL",
    "Key",
    "MigrationError",
    "MigrationFailed",
    "MigrationsNotFound",
    "NothingToRollback",
    "Order",
    "OrderItem",
    "OrderStatus",
    "Payment",
    "PaymentStatus",
    "UnknownMigration",
    "WebhookLog",
    "connect",
    "mask_url",
    "migrate",
    "pending",
    "rollback",
    "status",
]
