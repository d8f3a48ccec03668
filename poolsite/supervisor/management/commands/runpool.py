"""Host the pool supervisor and (by default) serve the web app in the same process.

Embedded default: daphne serves the ASGI app on --host/--port and the supervisor runs
in a thread beside it, so with SQLite and the in-memory channel layer the dashboards
get live updates from this very process (the broadcaster sends on daphne's own event
loop). `--no-web` runs the supervisor alone, for scale-out hosts sharing PostgreSQL
and Redis. `--with-demo-site` also serves the demo procurement site and signs the
workers in to it (what `make run` uses).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from poolsite.batches.models import DEMO_SITE, Batch, Site
from poolsite.sessions.health import start_refusal, use_host_session
from poolsite.sessions.signin import CaptureError, demo_secret, ensure_demo_session
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.controls import WAKE_GROUP, start_from_command_line
from poolsite.supervisor.host import HostOptions, HostSupervisor

log = logging.getLogger("poolsite.runpool")


class Command(BaseCommand):
    help = "Run the WorkerPool supervisor and serve the web app (daphne) in one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="web address (embedded)")
        parser.add_argument("--port", type=int, default=8000, help="web port (embedded)")
        parser.add_argument("--no-web", action="store_true",
                            help="supervisor only (scale-out; needs PostgreSQL and Redis)")
        parser.add_argument("--exit-when-idle", action="store_true",
                            help="exit once nothing is running or queued for the plan")
        parser.add_argument("--batch", type=int, help="start this batch id right away")
        parser.add_argument("--pool-size", type=int, default=None,
                            help=f"workers (1-8; default POOL_SIZE={settings.POOL_SIZE})")
        parser.add_argument("--max-task-timeout", type=float,
                            default=settings.POOL_MAX_TASK_TIMEOUT)
        parser.add_argument("--stop-timeout", type=float, default=settings.POOL_STOP_TIMEOUT)
        parser.add_argument("--storage-state", default="",
                            help="Playwright storage-state JSON for every worker")
        parser.add_argument("--base-profile", default="",
                            help="signed-in Chromium user-data-dir cloned per worker")
        parser.add_argument("--with-demo-site", action="store_true",
                            help="also serve the demo procurement site on POOL_DEMO_PORT")

    def handle(self, *args: Any, **options: Any) -> None:
        size = options["pool_size"]
        if size is not None and not 1 <= size <= 8:
            raise CommandError(f"--pool-size must be 1-8, not {size}")
        demo = self._start_demo_site() if options["with_demo_site"] else None
        if demo is not None and not (options["storage_state"] or options["base_profile"]):
            self._sign_in_demo(demo)
        storage_state = options["storage_state"]
        # An explicit session is what this host's start button must check, not the store.
        use_host_session(storage_state=storage_state, base_profile=options["base_profile"])
        host_options = self._host_options(options, storage_state, demo)
        if options["batch"] is not None:
            try:
                batch = Batch.objects.get(pk=options["batch"])
            except Batch.DoesNotExist:
                raise CommandError(f"no batch with id {options['batch']}") from None
            refusal = start_refusal(batch)  # no signed-in session: refuse, do not hang paused
            if refusal:
                if demo is not None:
                    demo.stop()
                raise CommandError(refusal)
            start_from_command_line(batch, size)
        try:
            if options["no_web"]:
                self._run_headless_host(host_options)
            else:
                self._run_embedded(host_options, options["host"], options["port"])
        finally:
            if demo is not None:
                demo.stop()

    # -- topologies ----------------------------------------------------------------------
    def _run_headless_host(self, host_options: HostOptions) -> None:
        broadcaster = Broadcaster()
        supervisor = HostSupervisor(host_options, broadcaster)
        broadcaster.listen(WAKE_GROUP, supervisor.wake.set)

        def on_signal(signum: int, frame: Any) -> None:
            log.info("signal %s: stopping gracefully", signum)
            supervisor.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(f"supervisor {supervisor.name} running (no web)")
        try:
            supervisor.serve()
        finally:
            broadcaster.close()

    def _run_embedded(self, host_options: HostOptions, host: str, port: int) -> None:
        import daphne.server
        from daphne.endpoints import build_endpoint_description_strings
        from twisted.internet import reactor

        from poolsite.asgi import application
        from poolsite.request_limits import capped_server

        # The consumers run on daphne's loop; sending from there avoids cross-loop
        # deliveries on the in-memory layer (see broadcast.py).
        broadcaster = Broadcaster(loop=daphne.server.twisted_loop)
        supervisor = HostSupervisor(host_options, broadcaster)
        broadcaster.listen(WAKE_GROUP, supervisor.wake.set)

        def serve_then_stop_web() -> None:
            try:
                supervisor.serve()
            finally:
                # --exit-when-idle (or a crash of the loop) ends the web server too.
                reactor.callFromThread(reactor.stop)  # type: ignore[misc]

        thread = threading.Thread(target=serve_then_stop_web, name="supervisor")
        thread.start()
        self.stdout.write(f"poolsite: http://{host}:{port}/  (admin: http://{host}:{port}"
                          "/admin/)", ending="\n")
        self.stdout.flush()
        try:
            # daphne with request bodies capped as they arrive (request_limits): plain
            # daphne holds a whole body in memory before the application can refuse it.
            capped_server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                signal_handlers=True, verbosity=0).run()
        finally:
            supervisor.request_stop()
            thread.join(host_options.stop_timeout + 60)
            broadcaster.close()

    # -- configuration -----------------------------------------------------------------------
    def _host_options(self, options: dict[str, Any], storage_state: str,
                      demo: Any) -> HostOptions:
        return HostOptions(
            output_root=Path(settings.OUTPUT_DIR),
            pool_size=options["pool_size"] or settings.POOL_SIZE,
            max_task_timeout=options["max_task_timeout"],
            max_attempts=settings.POOL_MAX_ATTEMPTS,
            memory_soft_mb=settings.POOL_MEMORY_SOFT_MB,
            memory_hard_mb=settings.POOL_MEMORY_HARD_MB,
            memory_check_seconds=settings.POOL_MEMORY_CHECK_SECONDS,
            lease_seconds=settings.POOL_LEASE_SECONDS,
            poll_seconds=settings.POOL_POLL_SECONDS,
            stop_timeout=options["stop_timeout"],
            headless=settings.POOL_HEADLESS,
            browser_path=settings.POOL_BROWSER_PATH,
            sites_dir=settings.POOL_SITES_DIR,
            storage_state=storage_state,
            base_profile=options["base_profile"],
            # The demo site served here is where "demo" batches go; otherwise each
            # batch's Site (or its stored address) says where its POs are.
            site_base_urls=(("demo", demo.base_url),) if demo else (),
            exit_when_idle=options["exit_when_idle"],
            site_probe_seconds=settings.POOL_SITE_PROBE_SECONDS,
        )

    def _start_demo_site(self) -> Any:
        from poolsite.demo_erp.server import DemoSite

        # A stable secret: the demo's sessions (and the saved one) survive a restart.
        demo = DemoSite(port=settings.POOL_DEMO_PORT, secret=demo_secret()).start()
        self.stdout.write(f"demo procurement site: {demo.base_url}")
        # Zero configuration: uploads can name the demo at once.
        Site.ensure(DEMO_SITE, "demo", demo.base_url, via="runpool --with-demo-site")
        return demo

    def _sign_in_demo(self, demo: Any) -> None:
        """Sign the demo site in through its scripted sign-in URL, into the session store."""
        try:
            saved = ensure_demo_session(demo)
        except CaptureError as exc:
            log.warning("the demo site is not signed in: %s", exc)
            return
        self.stdout.write(f"demo site signed in (session of {saved.captured_at:%Y-%m-%d %H:%M})")
