"""Database URLs as they may be shown: the password masked, whatever the URL's shape.

A URL that reaches us is not always well formed: a password with an unencoded
``/``, ``?``, ``#`` or ``@``, a missing scheme, one slash instead of two. Each
parser reads such a URL its own way (urllib takes ``S3cret`` of
``app:S3cret/PW@host`` for a port, libpq may take the rest for a database name
and the server echo it), so masking must not trust any one reading. Here the
userinfo runs up to the LAST ``@`` (a host or a port never holds one), every
reading's password counts as a secret, and a URL that parsers would read
differently is refused before it reaches a driver (``unclear``): when in
doubt, no part of it after the scheme is shown.
"""

import contextlib
import re
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

#: Query parameters that carry a secret (libpq's and peewee's names), lower case.
SECRET_PARAMETERS = ("password", "sslpassword", "passwd")

#: peewee's SQLite schemes: a file path, no host (sqlite:///relative.db).
_PATH_SCHEMES = ("sqlite", "sqlite+pool")

#: The schemes of the databases bitloot-lite runs on (peewee's names), lower case.
SCHEMES = (*_PATH_SCHEMES, *(f"{name}{ext}{pool}" for name in ("postgres", "postgresql")
                             for ext in ("", "ext") for pool in ("", "+pool")))
#: Scheme prefixes of databases peewee knows and bitloot-lite does not run on.
_FAMILIES = (("mysql", "MySQL"), ("mariadb", "MariaDB"), ("cockroach", "CockroachDB"),
             ("crdb", "CockroachDB"), ("psycopg3", "PostgreSQL through psycopg3 (use "
                                                "postgresql://)"), ("apsw", "APSW"))

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with its password (also one given as ``?password=``) as ``***``.

    ``postgresql://app:S3cret@db/bitloot`` -> ``postgresql://app:***@db/bitloot``;
    a URL whose password cannot be told apart shows nothing after its scheme
    (``postgresql://***``, ``postgresql:***``, ``***``).
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, rest = _scheme(url)
    if not rest.startswith("//"):
        # No authority: nothing tells a user:password@ apart from a path.
        if "@" in rest or not scheme and ":" in rest or _secret_values(rest):
            return f"{scheme}{MASK}" if scheme else MASK
        return url
    userinfo, tail = _userinfo(rest[2:])
    if userinfo is not None and ":" in userinfo:
        user = userinfo.partition(":")[0]
        if any(char in user for char in "/?#"):  # the last @ was not the userinfo's
            return f"{scheme}//{MASK}"
        return f"{scheme}//{user}:{MASK}@{_mask_query(tail)}"
    return f"{scheme}{_mask_query(rest)}"


def url_secrets(url: str) -> list[str]:
    """The strings of ``url`` that must never be printed, longest first (raw and decoded):
    the password as each reading of the URL finds it, and ``?password=``-like values."""
    if not isinstance(url, str):
        return []
    found = []
    with contextlib.suppress(ValueError):
        found.append(urlsplit(url).password)
    scheme, rest = _scheme(url)
    # Without its //, the "scheme" may be a user name (app:pw@host): read it both ways.
    for text in [rest] if rest.startswith("//") else [rest, url]:
        userinfo, _ = _userinfo(text.lstrip("/"))
        if userinfo is not None:
            found.append(userinfo.partition(":")[2])
    found += _secret_values(url)
    with contextlib.suppress(ValueError):
        found += [value for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)
                  if _is_secret(key)]
    found = [secret for secret in found if secret]
    return sorted({*found, *map(unquote, found), *map(unquote_plus, found)},
                  key=len, reverse=True)


def unclear(url: str) -> str | None:
    """Why ``url`` cannot be handed to a driver without risk of a misreading (None if it can).

    A misread URL connects somewhere else with the password in another field,
    where the driver or the server may echo it ("database app:S3cret@... does
    not exist"): such a URL is refused with advice, before any driver sees it.
    """
    scheme, rest = _scheme(url)
    if not rest.startswith("//"):
        # "app:pw@host/db" has no scheme, "postgresql:/app:pw@host" one slash too few.
        return ("expected scheme://..., e.g. sqlite:///bitloot.db or "
                "postgresql://user:password@host/db")
    if scheme[:-1].lower() in _PATH_SCHEMES and rest[2:3] not in ("/", "?", ""):
        # peewee would open sqlite://x.db as an in-memory database (x.db its "host").
        name = rest[2:].split("?", 1)[0]
        if "@" in name or ":" in name:  # nothing that could be a secret is echoed
            name = "relative/path.db"
        return (f"expected sqlite:///{name} or sqlite:////absolute/path/"
                f"{name.rsplit('/', 1)[-1]} (three slashes before a relative path, four "
                "before an absolute one)")
    userinfo, tail = _userinfo(rest[2:])
    try:
        parsed = urlsplit(url)
        theirs = parsed.password
        their_query = [value for key, value in parse_qsl(parsed.query, keep_blank_values=True)
                       if _is_secret(key)]
    except ValueError as exc:  # "Invalid IPv6 URL"
        return scrub(str(exc), url)
    ours = userinfo.partition(":")[2] if userinfo is not None and ":" in userinfo else None
    if (ours or None) != (theirs or None):
        return ("its password cannot be read unambiguously: percent-encode the characters "
                "/ ? # @ : in it (%2F %3F %23 %40 %3A), and any @ after it (%40)")
    if any(key and not eq for key, eq, _ in _query_pairs(tail)):
        return ("a ?parameter has no value: percent-encode the characters & # + in "
                "parameter values (%26 %23 %2B)")
    if sorted(map(unquote_plus, _secret_values(tail))) != sorted(their_query):
        return ("its ?password= cannot be read unambiguously: percent-encode the characters "
                "& # + in it (%26 %23 %2B)")
    return None


def unsupported(url: str) -> str | None:
    """Why ``url``'s scheme is not one bitloot-lite runs on (None if it is one).

    peewee knows more (``mysql://``, ``cockroachdb://`` ...) and would say a
    driver is missing, as if installing one would do: the models, migrations
    and SQL are SQLite's and PostgreSQL's only.
    """
    scheme = _scheme(url)[0][:-1].lower()
    if scheme in SCHEMES:
        return None
    family = next((name for prefix, name in _FAMILIES if scheme.startswith(prefix)),
                  f"{scheme}://" if scheme else "a URL without a scheme")
    return (f"{family} is not supported: bitloot-lite runs on SQLite (sqlite:///bitloot.db) "
            "and PostgreSQL (postgresql://user@host/db)")


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` (see url_secrets) replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def scrub(text: str, url: str) -> str:
    """Remove the URL's secrets from a driver message, should the driver echo them."""
    return redact(text, url_secrets(url))


def _scheme(url: str) -> tuple[str, str]:
    """("scheme:", the rest), or ("", url) when it has none."""
    match = _SCHEME.match(url)
    return (match.group(), url[match.end():]) if match else ("", url)


def _userinfo(text: str) -> tuple[str | None, str]:
    """(userinfo, what follows its @) of an authority-first ``text``; (None, text) if none.

    The userinfo runs to the last ``@`` before the path: a password may hold an
    unencoded ``/`` or ``#``, a host never holds an ``@``. A path that starts
    at once (sqlite:///x@y.db) has no userinfo.
    """
    if text.startswith("/"):
        return None, text
    userinfo, at, tail = text.rpartition("@")
    return (userinfo, tail) if at else (None, text)


def _is_secret(key: str) -> bool:
    return unquote_plus(key).strip().lower() in SECRET_PARAMETERS


def _query_pairs(text: str) -> list[tuple[str, str, str]]:
    query = text.partition("?")[2]
    return [pair.partition("=") for pair in query.split("&")] if query else []


def _secret_values(text: str) -> list[str]:
    """The raw values of secret ``?parameters`` in ``text``."""
    return [value for key, _, value in _query_pairs(text) if _is_secret(key)]


def _mask_query(text: str) -> str:
    """``text`` (after the authority) with secret parameter values, and any pair without
    ``=`` (the tail of a value holding an unencoded ``&``), as ``***``."""
    head, question, query = text.partition("?")
    if not question or not query:
        return text
    masked = []
    for key, eq, value in (pair.partition("=") for pair in query.split("&")):
        if not eq and key:
            masked.append(MASK)
        else:
            masked.append(f"{key}={MASK}" if _is_secret(key) else f"{key}{eq}{value}")
    return f"{head}?{'&'.join(masked)}"
