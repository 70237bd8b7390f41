"""A realistic demo shop in seconds: orders, items, keys, payments and webhook logs.

Every row obeys the rules the service API enforces: each order's status is
reached from ``created`` by moves of ``services.ORDER_MOVES`` and its payment's
by ``PAYMENT_MOVES``; no item holds more keys than its quantity, a fulfilled
order's items hold exactly their quantity; a reservation only on a paid or
fulfilled order, one order per reservation, one key per storage reference;
one webhook log per (externalId, webhookType, processed), repeats counted in
attemptCount. Everything (ids and timestamps too) comes from one RNG seeded
with ``seed``, so the same seed gives the same rows. The rows are written in
bulk (``bulk.Writer``), in one transaction.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import peewee as pw

from ..errors import DatabaseNotEmpty, NotMigrated, ValidationError
from ..models import MODELS, Key, Order, OrderItem, OrderStatus, Payment, PaymentStatus, WebhookLog
from ..services import ORDER_MOVES, PAYMENT_MOVES
from .bulk import Writer, big_cache, deferred_indexes, quote, storage_errors

logger = logging.getLogger("bitloot_lite.local.demo")

S, P = OrderStatus, PaymentStatus

#: (order statuses from created, the payment's statuses, weight): see PATHS.
Path = tuple[tuple[OrderStatus, ...], tuple[PaymentStatus, ...], int]
#: The rows made for each model, as tuples in its columns' order.
Tables = dict[type[pw.Model], list[tuple[Any, ...]]]
#: An order item being made: (id, product id, quantity).
Line = tuple[str, str, int]

#: The demo's clock ends here (a constant, so that a seed gives the same rows on any day).
UNTIL = dt.datetime(2026, 11, 1)
#: ... and starts this long before.
SPAN = dt.timedelta(days=180)
#: Orders generated and written per batch (and per progress report).
BATCH = 2000

#: (order statuses from created, the payment's statuses, weight): plausible proportions.
PATHS = (
    ((S.CREATED, S.WAITING, S.CONFIRMING, S.PAID, S.FULFILLED),
     (P.WAITING, P.CONFIRMED, P.FINISHED), 34),
    ((S.CREATED, S.WAITING, S.PAID, S.FULFILLED), (P.WAITING, P.FINISHED), 16),
    ((S.CREATED, S.WAITING, S.UNDERPAID, S.CONFIRMING, S.PAID, S.FULFILLED),
     (P.WAITING, P.UNDERPAID, P.CONFIRMED, P.FINISHED), 5),  # underpaid, then topped up
    ((S.CREATED, S.WAITING, S.CONFIRMING, S.PAID), (P.WAITING, P.CONFIRMED, P.FINISHED), 6),
    ((S.CREATED, S.FAILED), (), 4),  # abandoned at checkout
    ((S.CREATED, S.WAITING, S.FAILED), (P.WAITING, P.FAILED), 6),  # the payment expired
    ((S.CREATED, S.WAITING, S.UNDERPAID, S.FAILED), (P.WAITING, P.UNDERPAID, P.FAILED), 2),
    ((S.CREATED, S.WAITING, S.UNDERPAID), (P.WAITING, P.UNDERPAID), 4),
    ((S.CREATED, S.WAITING, S.CONFIRMING), (P.WAITING, P.CONFIRMED), 4),
    ((S.CREATED, S.WAITING), (P.WAITING,), 8),
    ((S.CREATED,), (), 6),
)


def check_paths(paths: Sequence[Path] = PATHS) -> None:
    """Raise ValueError unless every path moves as ORDER_MOVES and PAYMENT_MOVES allow."""
    for orders, payments, _weight in paths:
        if orders[0] is not S.CREATED:
            raise ValueError(f"{orders} does not start at created")
        for here, there in zip(orders, orders[1:], strict=False):
            if there not in ORDER_MOVES[here]:
                raise ValueError(f"order move {here.value} -> {there.value} is not allowed")
        for here, there in zip((P.CREATED, *payments), payments, strict=False):
            if there not in PAYMENT_MOVES[here]:
                raise ValueError(f"payment move {here.value} -> {there.value} is not allowed")


check_paths()  # at import: the demo must never drift from the services' rules

_CUMULATIVE: list[int] = []
_total = 0
for _path in PATHS:
    _total += _path[2]
    _CUMULATIVE.append(_total)

_FIRST = ("alex", "sam", "maria", "jan", "li", "noah", "emma", "omar", "yuki", "lea", "ivan",
          "sofia", "arjun", "chloe", "mateo", "zoe", "luca", "nina", "kai", "ana")
_LAST = ("smith", "garcia", "muller", "rossi", "kim", "novak", "silva", "dubois", "jensen",
         "tanaka", "kowalski", "moreau", "singh", "costa", "berg", "ali")
_DOMAINS = ("gmail.com", "outlook.com", "proton.me", "yahoo.com", "web.de", "icloud.com",
            "example.org")
_CURRENCIES = (("btc", 68000), ("eth", 3400), ("ltc", 85), ("usdttrc20", 1), ("sol", 160))
#: NOWPayments' and Kinguin's senders (documentation ranges: RFC 5737 and RFC 3849).
_SENDERS = ("192.0.2.10", "192.0.2.11", "198.51.100.24", "203.0.113.7", "2001:db8::1f4")
_VARIANT = "89ab" * 4

_COLUMNS = {model: tuple(f.column_name for f in model._meta.sorted_fields) for model in MODELS}


@dataclass(frozen=True)
class DemoResult:
    """What ``fill`` wrote: rows per table, and how long it took."""

    seed: int
    orders: int
    rows: dict[str, int]
    seconds: float

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds if self.seconds else float("inf")


def fill(database: pw.Database, orders: int = 1000, *, seed: int = 0, append: bool = False,
         progress: Callable[[int, int], object] | None = None,
         until: dt.datetime = UNTIL) -> DemoResult:
    """Fill ``database`` (migrated to the newest migration) with a demo shop of ``orders``.

    Refuses (DatabaseNotEmpty) a database holding rows unless ``append``; then
    the RNG is seeded with the seed and the number of orders already there,
    so an append is deterministic too and never repeats an id. ``progress``
    is called as ``progress(done, total)`` after each batch of orders.
    """
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 0:
        raise ValidationError("orders", orders, "must be a whole number >= 0")
    _require_migrated(database)
    existing = _count(database, Order) if append else _refuse_rows(database)
    rng = random.Random(f"bitloot-demo:{seed}:{existing}")
    shop = _Shop(rng, until, max(20, orders // 3), orders)
    if existing:  # an append must not reuse a payment id the database holds
        shop.payment_ids.update(row[0] for row in database.execute_sql(
            f"SELECT {quote(Payment.external_id.column_name)} FROM {quote('payments')}"))
    writer = Writer(database)
    written = dict.fromkeys((model._meta.table_name for model in MODELS), 0)
    started = time.perf_counter()
    sizes = [min(BATCH, orders - start) for start in range(0, orders, BATCH)]
    # The next batch is made in a thread while this one is written: sqlite3 and
    # psycopg2 let go of the GIL while the database works. One thread makes every
    # batch, in order, so the rows are the same as made in line.
    # Into an empty database the indexes are built once at the end (bulk.deferred_indexes).
    deferred = contextlib.nullcontext() if existing else deferred_indexes(database, written)
    with storage_errors("demo"), big_cache(database), database.atomic(), deferred, \
            concurrent.futures.ThreadPoolExecutor(1, "bitloot-demo") as maker:
        done = 0
        upcoming = maker.submit(shop.orders, sizes[0]) if sizes else None
        for number, count in enumerate(sizes):
            tables = upcoming.result()  # type: ignore[union-attr]  # sizes: a future
            if number + 1 < len(sizes):
                upcoming = maker.submit(shop.orders, sizes[number + 1])
            for model in MODELS:
                name = model._meta.table_name
                written[name] += writer.write(name, _COLUMNS[model], tables[model])
            done += count
            if progress is not None:
                progress(done, orders)
    seconds = time.perf_counter() - started
    logger.info("demo: %d orders (seed %d) in %.2fs", orders, seed, seconds)
    return DemoResult(seed, orders, written, seconds)


def _require_migrated(database: pw.Database) -> None:
    from ..migrating import pending  # the migration machinery, only when needed

    todo = pending(database)
    if todo:
        raise NotMigrated(todo)


def _count(database: pw.Database, model: type[pw.Model]) -> int:
    table = quote(model._meta.table_name)
    return cast(int, database.execute_sql(f"SELECT count(*) FROM {table}").fetchone()[0])


def _refuse_rows(database: pw.Database) -> int:
    for model in MODELS:
        table = quote(model._meta.table_name)
        if database.execute_sql(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
            raise DatabaseNotEmpty(model._meta.table_name)
    return 0


class _Shop:
    """Makes the rows of orders, batch by batch, from one RNG (see module docstring)."""

    def __init__(self, rng: random.Random, until: dt.datetime, customers: int, orders: int) -> None:
        self.rng = rng
        # Orders arrive in time order, as in a shop (and as the createdAt indexes like:
        # appended to, not inserted all over), a random gap apart, over SPAN.
        self.clock, self.until = until - SPAN, until
        self.gap_us = 0.95 * SPAN.total_seconds() * 1e6 / max(1, orders)
        self.next_payment = 5_000_000_000 + rng.getrandbits(24)
        self.customers = [self._email(n) for n in range(customers)]
        self.products = [(f"kinguin-{rng.randrange(10000, 99999)}", rng.choice(
            (499, 999, 1499, 1999, 2999, 3999, 4999, 5999, 6999))) for _ in range(250)]
        self.payment_ids: set[str] = set()
        self._uuids: list[str] = []

    def _email(self, n: int) -> str:
        r = self.rng
        return (f"{r.choice(_FIRST)}.{r.choice(_LAST)}{n}@{r.choice(_DOMAINS)}")

    def uuid(self) -> str:
        """A version 4 UUID (text) from the seeded RNG; made 512 at a time (faster)."""
        if not self._uuids:
            h = f"{self.rng.getrandbits(128 * 512):08192x}"
            self._uuids = [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-"
                           f"{_VARIANT[int(h[i + 16], 16)]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
                           for i in range(8192 - 32, -32, -32)]
        return self._uuids.pop()

    def stamp(self, base: dt.datetime, seconds: float) -> tuple[dt.datetime, str]:
        """``base`` plus ``seconds`` (with microseconds), and its text as peewee writes it."""
        moment = base + dt.timedelta(microseconds=int(seconds * 1e6))
        return moment, moment.isoformat(" ", "microseconds")

    def orders(self, count: int) -> Tables:
        tables: Tables = {model: [] for model in MODELS}
        for _ in range(count):
            self._order(tables)
        return tables

    def _order(self, tables: Tables) -> None:
        r = self.rng.random
        order_id = self.uuid()
        weight = r() * _total
        path, payment_path, _ = PATHS[next(i for i, c in enumerate(_CUMULATIVE) if weight < c)]
        status = path[-1]
        self.clock = min(self.clock + dt.timedelta(microseconds=int(r() * 2 * self.gap_us)),
                         self.until)
        created = self.clock
        created_text = created.isoformat(" ", "microseconds")
        email = self.customers[int(r() * r() * len(self.customers))]  # some buy often
        # Items: one to four lines, mostly quantity 1.
        lines, cents = [], 0
        for _ in range(1 + int(r() * r() * 4)):
            product, price = self.products[int(r() * len(self.products))]
            roll = r()
            quantity = 1 if roll < 0.75 else 2 if roll < 0.92 else 3 + int(r() * 3)
            lines.append((self.uuid(), product, quantity))
            cents += price * quantity
        total = f"{cents // 100}.{cents % 100:02d}000000"
        # The status history: a few minutes between moves, up to an hour to fulfil.
        moment = created
        times = []
        for _ in path[1:]:
            moment, _text = self.stamp(moment, 30 + r() * 1800)
            times.append(moment)
        updated_text = (times[-1] if times else created).isoformat(" ", "microseconds")
        reservation = None
        if status is S.FULFILLED or (status is S.PAID and r() < 0.6):
            reservation = f"kinguin-res-{order_id[:8]}{order_id[24:]}"
        tables[Order].append((order_id, created_text, updated_text, email, status.value, total,
                              reservation))
        for item_id, product, quantity in lines:
            tables[OrderItem].append((item_id, created_text, created_text, order_id, product,
                                      quantity, None))
        if status is S.FULFILLED:
            self._keys(tables, lines, times[-2], times[-1], True)
        elif status is S.PAID:
            self._keys(tables, lines, times[-1], times[-1] + dt.timedelta(hours=1), False)
        if payment_path:
            self._payment(tables, order_id, email, cents, total, payment_path, created, times)
        if reservation is not None and status is S.FULFILLED:
            self._kinguin(tables, order_id, reservation, lines, times[-1])

    def _keys(self, tables: Tables, lines: list[Line], start: dt.datetime, end: dt.datetime,
              fulfilled: bool) -> None:
        """Keys made between ``start`` and ``end``: each item's quantity for a fulfilled
        order, up to it for a paid one (still filling up); a fulfilled order's keys are
        revealed, or not, after ``end``."""
        r = self.rng.random
        rows = tables[Key]
        window = (end - start).total_seconds()
        for item_id, _product, quantity in lines:
            have = quantity if fulfilled else int(r() * (quantity + 1))
            for _ in range(have):
                key_id = self.uuid()
                created, created_text = self.stamp(start, r() * window)
                viewed_text = None
                if fulfilled and r() < 0.6:  # revealed, within days
                    _viewed, viewed_text = self.stamp(end, 60 + r() * 5 * 86400)
                ref = f"keys/{created:%Y/%m}/{key_id}.enc"
                rows.append((key_id, created_text, viewed_text or created_text, item_id, ref,
                             viewed_text))

    def _payment_id(self) -> str:
        while True:  # NOWPayments' ids: increasing numbers; never one the database holds
            self.next_payment += 1 + int(self.rng.random() * 40)
            pid = str(self.next_payment)
            if pid not in self.payment_ids:
                self.payment_ids.add(pid)
                return pid

    def _payment(self, tables: Tables, order_id: str, email: str, cents: int, total: str,
                 path: tuple[PaymentStatus,
                 ...], created: dt.datetime, times: list[dt.datetime]) -> None:
        r = self.rng.random
        payment_id = self.uuid()
        external = self._payment_id()
        currency, usd = _CURRENCIES[int(r() * len(_CURRENCIES))]
        units = round(cents * 1_000_000 / usd)  # 1e-8 of the coin
        pay_amount = f"{units // 100_000_000}.{units % 100_000_000:08d}"
        price = cents / 100
        address = f"{self.rng.getrandbits(160):040x}"
        # One notification per payment status, at the order's moves (the payment's own
        # moments: created a little after the order, each notice at an order move).
        stamps = (times + [times[-1]] * len(path))[:len(path)]
        opened, opened_text = self.stamp(created, 5 + r() * 55)
        last_payload, last = None, opened
        confirmations = 0
        for position, (pay_status, moment) in enumerate(zip(path, stamps, strict=False)):
            moment = last = max(moment, opened) + dt.timedelta(microseconds=position + 1)
            paid = units if pay_status in (P.CONFIRMED, P.FINISHED) else (
                units * 7 // 10 if pay_status is P.UNDERPAID else 0)
            if pay_status is P.FINISHED:
                confirmations = 1 + int(r() * 6)
            elif pay_status is P.CONFIRMED:
                confirmations = 1
            # The processor's notification (IPN), spelled as json.dumps would with
            # JSONField's separators; every value is ours and needs no escaping.
            text = (f'{{"payment_id":{external},"payment_status":"{pay_status.value}",'
                    f'"pay_address":"{address}","price_amount":{price!r},'
                    f'"price_currency":"usd","pay_amount":{units / 1e8!r},'
                    f'"actually_paid":{paid / 1e8!r},"pay_currency":"{currency}",'
                    f'"order_id":"{order_id}","order_description":"BitLoot order '
                    f'{order_id[:8]}","customer_email":"{email}"}}')
            last_payload = text
            self._webhook(tables, f"{external}:{pay_status.value}", "payment", text, order_id,
                          external, pay_status.value, moment)
        tables[Payment].append((
            payment_id, opened_text, last.isoformat(" ", "microseconds"), order_id, external,
            "nowpayments", path[-1].value, last_payload, total, "usd", pay_amount, currency,
            confirmations))

    def _kinguin(self, tables: Tables, order_id: str, reservation: str, lines: list[Line],
                 when: dt.datetime) -> None:
        products = ",".join(f'{{"productId":"{p}","qty":{q}}}' for _i, p, q in lines)
        text = (f'{{"reservationId":"{reservation}","status":"completed",'
                f'"products":[{products}]}}')
        self._webhook(tables, reservation, "kinguin", text, order_id, None, None, when)

    def _webhook(self, tables: Tables, external: str, kind: str, payload: str, order_id: str,
                 payment: str | None, pay_status: str | None, when: dt.datetime) -> None:
        r = self.rng.random
        rows = tables[WebhookLog]
        ip = _SENDERS[int(r() * len(_SENDERS))]
        created_text = when.isoformat(" ", "microseconds")
        attempts = 1 if r() < 0.88 else 2 + int(r() * 3)  # the sender did not hear our 200
        updated_text = (when + dt.timedelta(seconds=attempts * 7)).isoformat(" ", "microseconds")
        signature = f"{self.rng.getrandbits(512):0128x}"  # an HMAC-SHA512, hex
        result = ('{"ok":true}' if pay_status is None
                  else f'{{"ok":true,"payment_status":"{pay_status}"}}')
        rows.append((self.uuid(), created_text, updated_text, external, kind, payload, signature,
                     True, True, order_id, payment, result, pay_status, None, ip, attempts))
        if r() < 0.02:  # a forged or corrupted delivery: logged, refused, not processed
            rows.append((self.uuid(), created_text, created_text, external, kind, payload,
                         f"{self.rng.getrandbits(512):0128x}", False, False, order_id, payment,
                         None, pay_status, "invalid signature", ip, 1))
