"""bitloot-lite's migrations, in peewee-migrate's format (shipped as bitloot_lite.migrations).

Each file is frozen history: it imports peewee and peewee_migrate only, never
bitloot_lite's models, and spells out its own DDL for each backend.
"""
