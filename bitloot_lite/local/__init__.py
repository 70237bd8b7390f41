"""Local prototyping: a demo shop, a shell, a copy of a database, a picture of the schema.

These modules use the models, the services' rules and the schema snapshot; nothing
outside ``local`` imports them (but the CLI).
"""
