"""A PostgreSQL database of a benchmark's own: made at the start, dropped at the end (even when the run
is stopped with SIGTERM), never one the benchmark did not make."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_database(server: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """Create `<prefix>_<pid>` on `server` (a URL without a database), point DATABASE_URL at it for this
    process, and yield its URL; afterwards close Django's connections and drop it, unless `keep`."""
    import psycopg
    from psycopg import sql

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # stopped from outside: still drop it
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{server}/{name}"
    os.environ["DATABASE_URL"] = url
    try:
        yield url
    finally:
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if keep:
            print(f"kept the database {name}")
        else:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
