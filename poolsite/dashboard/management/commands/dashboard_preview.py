"""Serve the web app with a pretend pool: for a look at the dashboard, its tests and bench.

    daphne (this process) ─▶ consumers in group "pool"
    Broadcaster on daphne's loop ◀─ FakeEngine (--fake-rate) ◀─ JSON lines on stdin (--stdin)

`--seed` writes realistic rows (preview.seed_preview); the pretend host's heartbeat is
kept fresh (seeded here or by a test); `--stdin` turns each line {"workers", "pool",
"events"} into a broadcast, exactly as the runpool supervisor would send it. Prints
"ready <url>" once listening. Not for production: no workers, no PO is ever processed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from poolsite.batches.roles import OPERATORS, VIEWERS
from poolsite.dashboard.preview import FakeEngine, seed_preview
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.models import PoolHost

HOST = "preview-host:4242"
HEARTBEAT_SECONDS = 3.0


class Command(BaseCommand):
    help = "Serve the app with realistic pretend pool data and live updates (no workers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--seed", action="store_true", help="write a part-done batch")
        parser.add_argument("--pos", type=int, default=240)
        parser.add_argument("--workers", type=int, default=4)
        parser.add_argument("--fake-rate", type=float, default=0.0,
                            help="pretend engine events per second (0: none)")
        parser.add_argument("--stdin", action="store_true",
                            help="broadcast each JSON line read on stdin")
        parser.add_argument("--user", action="append", default=[],
                            help="ROLE:NAME:PASSWORD (role: operators or viewers); "
                                 "prints 'session NAME KEY' for a signed-in cookie")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:  # it writes pretend rows and prints session keys
            raise CommandError("dashboard_preview is a development tool: it refuses to run "
                               "with DJANGO_DEBUG=0")
        for spec in options["user"]:
            self._user(spec)
        batch = seed_preview(pos=options["pos"], workers=options["workers"], host=HOST) \
            if options["seed"] else None
        stop = threading.Event()
        # The pretend host stays live, seeded here or by a test's own rows.
        threading.Thread(target=self._heartbeat, args=(stop,), daemon=True).start()
        state: dict[str, Any] = {}

        def ready() -> None:
            broadcaster = Broadcaster(loop=asyncio.get_event_loop())
            state["broadcaster"] = broadcaster
            if batch is not None and options["fake_rate"] > 0:
                state["engine"] = FakeEngine(broadcaster, host=HOST, workers=options["workers"],
                                             batch=batch,
                                             updates_per_second=options["fake_rate"]).start()
            if options["stdin"]:
                threading.Thread(target=self._relay_stdin, args=(broadcaster,),
                                 daemon=True).start()
            self.stdout.write(f"ready http://{options['host']}:{options['port']}/")
            self.stdout.flush()

        try:
            self._serve(options["host"], options["port"], ready)
        finally:
            stop.set()
            if "engine" in state:
                state["engine"].stop()

    def _user(self, spec: str) -> None:
        role, name, password = spec.split(":", 2)
        if role not in (OPERATORS, VIEWERS):
            raise ValueError(f"role must be {OPERATORS} or {VIEWERS}, not {role!r}")
        user, _ = User.objects.get_or_create(username=name)
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get(name=role))
        # A signed-in session for tests, printed for a browser cookie.
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        self.stdout.write(f"session {name} {session.session_key}")

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            PoolHost.objects.filter(name=HOST).update(heartbeat_at=timezone.now())
            close_old_connections()

    def _relay_stdin(self, broadcaster: Broadcaster) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            message = json.loads(line)
            for key, fields in (message.get("workers") or {}).items():
                broadcaster.worker(key, fields)
            if message.get("pool"):
                broadcaster.pool(message["pool"])
            for event in message.get("events") or []:
                broadcaster.event(event)

    def _serve(self, host: str, port: int, ready: Any) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from poolsite.asgi import application

        Server(application=application,
               endpoints=build_endpoint_description_strings(host=host, port=port),
               signal_handlers=True, verbosity=0, ready_callable=ready).run()
