"""gitsync's read-only web dashboard: a WSGI application over the status branch.

:mod:`gitsync.board` decides what each page shows; :mod:`.app` turns that into
responses; :mod:`.serve` serves it with the standard library for ``gitsync
dashboard``, where the daemon's listener mounts :class:`Dashboard` instead.
"""

from gitsync.dashboard.app import (
    BasicAuth,
    BoardSource,
    Dashboard,
    MirrorSource,
    RepositorySource,
)

__all__ = ["BasicAuth", "BoardSource", "Dashboard", "MirrorSource", "RepositorySource"]
