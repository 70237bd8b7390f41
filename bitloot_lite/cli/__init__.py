"""The bitloot-lite command (click): ``cli`` is the group, ``main`` the entry point.

One module per group of commands; importing them registers them on ``cli``.
"""

from . import local, migrations, repairs, roles  # noqa: F401 - registers the commands
from .base import cli, main
from .progress import _Bars, _StepProgress  # noqa: F401 - tests tune the step progress

__all__ = ["cli", "main"]
