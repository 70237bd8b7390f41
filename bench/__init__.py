"""bitloot-lite's benchmarks (`make bench`, or `python -m bench.run`).

- ``common``: settings, throwaway databases, raw connections, the interleaved timer.
- ``raw``: the work done with the raw drivers (sqlite3, psycopg2), by hand.
- ``orm``: the same work with SQLAlchemy 2.x's ORM.
- ``scenarios``: checkout, key restock, lookup at scale, start-up, migrate.
- ``online``: the writer's longest stall while 005 builds its index on PostgreSQL.
- ``run``: the entry point; prints every figure and the targets, MET or NOT MET.
"""
