"""Fixtures every test package shares: the demo site, the browser, the services."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pool_core.browser import find_browser
from poolsite.demo_erp.server import DemoSite

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@pytest.fixture(scope="session")
def demo_site() -> Iterator[DemoSite]:
    """The demo procurement site on a free port, shared by the whole session."""
    site = DemoSite(latency=0.0).start()
    yield site
    site.stop()


@pytest.fixture
def site(demo_site: DemoSite) -> DemoSite:
    """The shared demo site with fresh counters and no latency, for one test."""
    demo_site.reset_counters()
    demo_site.latency = 0.0
    demo_site.down = False
    return demo_site


@pytest.fixture(scope="session")
def browser_path() -> str:
    return find_browser(os.environ.get("POOL_BROWSER_PATH") or None)


def service_url(name: str) -> str:
    """The URL of a scale-out service for tests, or skip (fail in CI) when unset."""
    url = os.environ.get(name, "")
    if not url:
        message = f"{name} is not set: scale-out tests need PostgreSQL/Redis (see README)"
        if os.environ.get("POOL_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Test on a SQLite *file*, as production does (WAL, busy timeout, real locking).

    Django's default in-memory shared-cache test database locks whole tables and
    ignores the busy timeout, so concurrent claims would fail there and nowhere else.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        path = tmp_path_factory.mktemp("db") / "test.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(path)


def user_in_role(username: str, role: str) -> User:
    """A user in the "operators" or "viewers" group, (re)creating the group if needed.

    Transactional tests flush the database, taking the groups the data migration made
    with it; this puts them back the way the migration does.
    """
    from django.contrib.auth.models import Group, Permission
    from django.contrib.auth.models import User as UserModel

    from poolsite.batches.roles import OPERATOR_CODENAMES, OPERATORS, VIEWER_CODENAMES

    codenames = OPERATOR_CODENAMES if role == OPERATORS else VIEWER_CODENAMES
    group, _ = Group.objects.get_or_create(name=role)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="batches",
                                                     codename__in=codenames))
    user = UserModel.objects.create_user(username, f"{username}@example.org")
    user.groups.add(group)
    return user
