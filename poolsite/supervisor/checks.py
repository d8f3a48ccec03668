"""System checks for what the supervisor needs from its database."""

from __future__ import annotations

import sqlite3
from typing import Any

from django.core.checks import Error, register
from django.db import connections


@register()
def sqlite_supports_returning(app_configs: Any, **kwargs: Any) -> list[Error]:
    """Claims on SQLite are one `UPDATE … RETURNING` statement (SQLite 3.35, 2021)."""
    uses_sqlite = any(connections[alias].vendor == "sqlite" for alias in connections)
    if uses_sqlite and sqlite3.sqlite_version_info < (3, 35):
        return [Error(f"SQLite {sqlite3.sqlite_version} is too old: poolsite needs 3.35 or "
                      "newer (UPDATE … RETURNING)", hint="use a newer Python or SQLite, or "
                      "PostgreSQL through DATABASE_URL", id="supervisor.E001")]
    return []
