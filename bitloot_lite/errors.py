"""The exception tree: every error bitloot-lite raises is a BitlootError."""


class BitlootError(Exception):
    """Base class of every error raised by bitloot-lite."""


class ConfigurationError(BitlootError):
    """The package was given settings it cannot use."""


class InvalidDatabaseURL(ConfigurationError):
    """DATABASE_URL (or ``url=``) is not a URL we can open.

    ``url`` is the masked URL: it never holds the password.
    """

    def __init__(self, url, reason):
        self.url = url
        self.reason = reason
        super().__init__(f"invalid database URL {url}: {reason}")


class DatabaseUnavailable(BitlootError):
    """The database named by ``url`` (masked) could not be reached or opened."""

    def __init__(self, url, reason):
        self.url = url
        self.reason = reason
        super().__init__(f"cannot connect to {url}: {reason}")


class MigrationError(BitlootError):
    """Base class of errors about migrations."""


class MigrationsNotFound(MigrationError):
    """The migrations folder does not exist or holds no migration."""

    def __init__(self, path):
        self.path = path
        super().__init__(f"no migrations found in {path}")


class UnknownMigration(MigrationError):
    """A migration name was given that is not in the migrations folder."""

    def __init__(self, name, known=()):
        self.name = name
        self.known = list(known)
        hint = f" (known: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"unknown migration {name!r}{hint}")


class NothingToRollback(MigrationError):
    """A rollback was asked for more migrations than are applied."""

    def __init__(self, requested, applied):
        self.requested = requested
        self.applied = applied
        super().__init__(
            f"cannot roll back {requested} migration(s): {applied} applied"
        )


class MigrationFailed(MigrationError):
    """Applying or rolling back ``name`` failed; its transaction was undone."""

    def __init__(self, name, direction, cause):
        self.name = name
        self.direction = direction
        self.cause = cause
        super().__init__(f"{direction} of {name} failed and was undone: {cause}")
