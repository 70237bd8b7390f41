"""9. The checkout through PgBouncer in transaction pooling (issue 10).

bitloot-lite (``prepare=auto``: it sees the pooler and sends its statements
whole, no server-side PREPARE) against the raw driver, both through the same
PgBouncer, a private one this scenario starts in front of the bench's server
(tests/servers.py: Debian's ``pgbouncer``, its default configuration).
"""

import shutil
from types import SimpleNamespace
from urllib.parse import urlsplit

import bitloot_lite as bl

from .common import Contender, Target, database_name, interleave, table, test_servers
from .raw import Raw
from .scenarios import (
    CHECKOUT_OPS,
    CHECKOUT_WARMUP,
    LITE,
    RAW,
    _check_checkouts,
    _rate_headers,
    _rate_rows,
    lite_checkout,
)


def pooled(settings, databases):
    print("\n== 9. Checkout through PgBouncer (transaction pooling) ==")
    if not (shutil.which("pgbouncer") or shutil.which("/usr/sbin/pgbouncer")):
        print("not measured: no pgbouncer here (apt-get install -y pgbouncer)")
        return [Target("9. checkout via PgBouncer", "postgres", ">= 1.0x raw driver",
                       "not measured", None)]
    servers = test_servers()  # the tests' helper: bench/ lives in the clone too

    parts = urlsplit(settings.pg_url)
    server = SimpleNamespace(hostname=parts.hostname or "127.0.0.1", port=parts.port or 5432)
    user = parts.username or "postgres"
    print(f"the checkout of scenario 1, through PgBouncer (pool_mode = transaction, defaults "
          f"otherwise) in front of {server.hostname}:{server.port}; {settings.reps} interleaved "
          f"repetitions of {settings.scaled(CHECKOUT_OPS, 2)} checkouts each, medians")
    url = databases.new("postgres")
    direct = bl.connect(url)
    bl.migrate(direct)  # migrations go direct, never through a transaction pooler
    direct.close()
    with servers.pgbouncer(server, "transaction", databases=(), users=(user,)) as bouncer:
        through = bouncer.url(database_name(url), user=user)
        db = bl.connect(through)
        raw = Raw(through)
        try:
            print(f"bitloot-lite through it: pooled={db.pooled}, prepares={db.prepares}")
            rates = interleave([Contender(LITE, lite_checkout(db)), Contender(RAW, raw.checkout)],
                               reps=settings.reps, ops=settings.scaled(CHECKOUT_OPS, 2),
                               warmup=settings.scaled(CHECKOUT_WARMUP, 1))
            _check_checkouts(db)
        finally:
            raw.close()
            db.close()
            bl.db.database_proxy.initialize(None)
    databases.drop(url)
    print(table(_rate_headers("checkouts"), _rate_rows(rates, "postgres")))
    vs_raw = rates.median(LITE) / rates.median(RAW)
    return [Target("9. checkout via PgBouncer", "postgres", ">= 1.0x raw driver",
                   f"{vs_raw:.2f}x", vs_raw >= 1.0)]
