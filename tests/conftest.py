"""Fixtures every test package shares: the demo site, the browser, the services."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pool_core.browser import find_browser, launch_args
from pool_core.egress_proxy import EgressProxy
from pool_core.sites import load_preset
from poolsite.demo_erp.server import DemoSite

# The comments render this long after `load` in tests (the site's default is 0.6 s):
# late all the same, and the suite visits hundreds of PO pages.
COMMENTS_DELAY = 0.2

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from poolsite.supervisor.host import HostSupervisor


# Whole folders of slow tests: each starts deployments (runpool, daphne, Chromium
# workers) or injects faults and waits them out. Single slow tests elsewhere carry
# @pytest.mark.slow themselves.
SLOW_FOLDERS = ("e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).parent.name in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_site() -> Iterator[DemoSite]:
    """The demo procurement site (pages shaped like Coupa's), shared by the whole session."""
    site = DemoSite(latency=0.0, comments_delay=COMMENTS_DELAY).start()
    yield site
    site.stop()


@pytest.fixture
def site(demo_site: DemoSite) -> DemoSite:
    """The shared demo site with fresh counters and default timings, for one test."""
    demo_site.reset_counters()
    demo_site.latency = 0.0
    demo_site.comments_delay = COMMENTS_DELAY
    demo_site.revoke_after = None
    demo_site.down = False
    return demo_site


@pytest.fixture
def coupa_site(site: DemoSite) -> DemoSite:
    """The same site, named for the tests that are about its Coupa shape."""
    return site


@pytest.fixture(scope="session")
def simple_demo_site() -> Iterator[DemoSite]:
    """The demo site in its "simple" shape (plain links: the generic preset's pages)."""
    site = DemoSite(shape="simple").start()
    yield site
    site.stop()


@pytest.fixture
def simple_site(simple_demo_site: DemoSite) -> DemoSite:
    simple_demo_site.reset_counters()
    simple_demo_site.latency = 0.0
    simple_demo_site.down = False
    return simple_demo_site


@pytest.fixture(scope="session")
def browser_path() -> str:
    return find_browser(os.environ.get("POOL_BROWSER_PATH") or None)


@pytest.fixture(scope="session")
def worker_args(demo_site: DemoSite) -> Iterator[list[str]]:
    """A worker browser's flags for tests that drive pages in-process: the launch flags
    and the egress proxy of the demo tenant (both shapes of the demo site are on
    127.0.0.1; the third-party, identity and canary hosts are off its list)."""
    tenant = load_preset("demo").for_tenant(demo_site.base_url)
    with EgressProxy(tenant.connect_addresses) as proxy:
        yield [*launch_args(), *proxy.browser_args()]


def service_url(name: str) -> str:
    """The URL of a scale-out service for tests, or skip (fail in CI) when unset."""
    url = os.environ.get(name, "")
    if not url:
        message = f"{name} is not set: scale-out tests need PostgreSQL/Redis (see README)"
        if os.environ.get("POOL_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url



@contextlib.contextmanager
def fresh_postgres_database(server: str) -> Iterator[str]:
    """Create a uniquely named database on `server`; yield its URL; drop it afterwards."""
    import psycopg

    name = f"poolsite_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

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


@pytest.fixture
def start_host(site: DemoSite, tmp_path: Path) -> Iterator[Callable[..., HostSupervisor]]:
    """Run HostSupervisors in this process (threads) on the demo site; stop them after.

    `start_host(signed_in=True, **options)`: signed in means the host is given its own
    storage state, as `runpool --storage-state` does; otherwise it uses the store.
    """
    from poolsite.sessions.health import use_host_session
    from poolsite.supervisor.broadcast import Broadcaster
    from poolsite.supervisor.host import HostOptions, HostSupervisor

    running: list[tuple[HostSupervisor, threading.Thread, Broadcaster]] = []

    def start(signed_in: bool = True, **overrides: Any) -> HostSupervisor:
        state = ""
        if signed_in:
            path = tmp_path / "storage-state.json"
            path.write_text(json.dumps(site.storage_state()))
            state = str(path)
            use_host_session(storage_state=state)
        options: dict[str, Any] = dict(
            output_root=tmp_path / "output", pool_size=2, poll_seconds=0.2,
            lease_seconds=20, stop_timeout=15, storage_state=state,
            site_base_urls=(("demo", site.base_url),))
        options.update(overrides)
        broadcaster = Broadcaster()
        supervisor = HostSupervisor(HostOptions(**options), broadcaster)
        thread = threading.Thread(target=supervisor.serve, daemon=True)
        thread.start()
        running.append((supervisor, thread, broadcaster))
        return supervisor

    yield start
    for supervisor, thread, broadcaster in running:
        supervisor.request_stop()
        thread.join(60)
        broadcaster.close()
        assert not thread.is_alive(), "a host did not stop"
    use_host_session()
