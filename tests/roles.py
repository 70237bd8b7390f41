"""Helpers for tests that need PostgreSQL roles or URLs with session options.

Roles are cluster-wide, so each test creates its own, uniquely named, and
drops it afterwards (DROP OWNED in every database it was given objects or
privileges in, then DROP ROLE): nothing is left on the shared server.
"""

import contextlib
import uuid
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from bitloot_lite.db import open_database
from bitloot_lite.errors import BitlootError


def with_user(url, user):
    """``url`` connecting as ``user`` (no password: the test server trusts loopback)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}@{host}"))


def with_options(url, options):
    """``url`` with libpq's ``options`` (e.g. ``-c search_path=shop``)."""
    parts = urlsplit(url)
    query = [pair for pair in parse_qsl(parts.query) if pair[0] != "options"]
    query.append(("options", options))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def with_search_path(url, search_path):
    return with_options(url, f"-c search_path={search_path.replace(' ', '')}")


@contextlib.contextmanager
def temporary_role(admin, database_url, prefix="bitloot_role"):
    """A new LOGIN role on ``admin``'s server (a superuser connection), its name yielded.

    After the block, what it owns and was granted in the database at
    ``database_url`` (the test's throwaway one) is dropped, then the role.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin.execute_sql(f'CREATE ROLE "{name}" LOGIN')
    try:
        yield name
    finally:
        with contextlib.suppress(BitlootError):  # the database may be gone already
            owner = open_database(database_url)
            try:
                owner.execute_sql(f'DROP OWNED BY "{name}"')
            finally:
                owner.close()
        admin.execute_sql(f'DROP ROLE IF EXISTS "{name}"')
