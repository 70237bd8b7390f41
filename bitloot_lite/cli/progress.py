"""Progress on a terminal (click's progressbar, on stderr, never with -q): the bars of
demo and copy, and the long steps of migrate."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .. import migrating
from ..db import is_postgres
from ..errors import BitlootError
from .base import (
    logger,
)

if TYPE_CHECKING:
    import peewee as pw
    from click._termui_impl import ProgressBar

    from .._typing import StrPath


class _Bars:
    """Progress bars (click's) on stderr, for a callback ``progress(label, done, total)``.

    Drawn only when stderr is a terminal and without -q; a new label closes the
    bar before it and opens its own.
    """

    if TYPE_CHECKING:  # both None until the first call
        label: str | None
        bar: ProgressBar[int] | None

    def __init__(self) -> None:
        quiet = click.get_current_context().meta.get("bitloot.quiet")
        self.on = not quiet and sys.stderr.isatty()
        self.label = self.bar = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.on:
            return
        if label != self.label or self.bar is None:
            self.close()
            self.label = label
            self.bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr,
                                         show_pos=True, show_percent=True, show_eta=True)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()




_INDEX_PROGRESS = """
SELECT i.relname, t.relname, p.phase, p.blocks_done, p.blocks_total
FROM pg_stat_progress_create_index p
LEFT JOIN pg_class i ON i.oid = p.index_relid LEFT JOIN pg_class t ON t.oid = p.relid
WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1"""


class _StepProgress:
    """Progress of `migrate` on a terminal (stderr, not with -q) once a step has run for
    AFTER seconds: the step's name and time; on PostgreSQL, an index build's blocks as
    a bar (pg_stat_progress_create_index). A thread of its own polls, on connections
    of its own (peewee's are per thread), and never touches the migration's."""

    AFTER = 2.0
    POLL = 0.5

    def __init__(self, database: pw.Database, migrations_dir: StrPath | None) -> None:
        self.database = database
        self.migrations_dir = migrations_dir
        quiet = click.get_current_context().meta.get("bitloot.quiet")
        self.on = not quiet and sys.stderr.isatty()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.since = time.monotonic()
        self.shown = False
        self.bar: ProgressBar[int] | None = None
        self.thread: threading.Thread | None = None
        self.waiting = False  # for another deploy's lock: that is said, not a step

    def __enter__(self) -> _StepProgress:
        if self.on:
            self.thread = threading.Thread(target=self._watch, name="bitloot-progress",
                                           daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()
        self._clear()

    def wrap(self, callback: Callable[..., object],
             waiting: bool = False) -> Callable[..., None]:
        """``callback`` for on_step (or on_wait, ``waiting``), with the status line
        cleared before it prints."""
        def call(*args: Any) -> None:
            with self.lock:
                self._clear()
                self.since = time.monotonic()
                self.waiting = waiting
            callback(*args)
        return call

    def _clear(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None
        if self.shown:
            click.echo("\r\x1b[K", nl=False, err=True)
            self.shown = False

    def _watch(self) -> None:
        try:
            while not self.done.wait(self.POLL):
                if not self.waiting and time.monotonic() - self.since >= self.AFTER:
                    self._show()
        except BitlootError:  # only a display: never fail the migration for it
            pass
        except Exception as exc:  # noqa: BLE001 - the same; logged for -v
            logger.info("migration progress stopped: %r", exc)
        finally:
            self.database.close()  # this thread's connection

    def _show(self) -> None:
        build = None
        if is_postgres(self.database):
            build = self.database.execute_sql(_INDEX_PROGRESS).fetchone()
        todo = migrating.pending(self.database, self.migrations_dir)
        with self.lock:
            if self.done.is_set():
                return
            seconds = time.monotonic() - self.since
            name = todo[0] if todo else "the index builds"
            if build is not None and build[4]:
                # An index made inside the migration's transaction has no name yet for
                # other sessions: then the step's name.
                index, table, phase, blocks_done, blocks_total = build
                label = f"{f'{index} on {table}' if index else name}: {phase}"
                if self.bar is None or self.bar.length != blocks_total:
                    self._clear()
                    self.bar = click.progressbar(length=blocks_total, label=label,
                                                 file=sys.stderr, show_percent=True)
                self.bar.label = label
                self.bar.update(blocks_done - self.bar.pos)
                return
            if self.bar is not None:
                self._clear()
            click.echo(f"\r\x1b[K{name}: running for {seconds:.0f}s ...", nl=False, err=True)
            self.shown = True


