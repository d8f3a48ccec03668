"""Host the pool supervisor and (by default) serve the web app in the same process.

Embedded default: daphne serves the ASGI app on --host/--port so that, with SQLite and
the in-memory channel layer, dashboards get live updates from this very process.
`--no-web` runs the supervisor alone (scale-out). `--with-demo-site` also serves the
demo procurement site on POOL_DEMO_PORT (what `make run` uses).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

log = logging.getLogger("poolsite.runpool")


class Command(BaseCommand):
    help = "Run the WorkerPool supervisor and serve the web app (daphne) in one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-web", action="store_true", help="supervisor only")
        parser.add_argument("--with-demo-site", action="store_true",
                            help="also serve the demo procurement site on POOL_DEMO_PORT")

    def handle(self, *args: Any, **options: Any) -> None:
        demo = None
        if options["with_demo_site"]:
            from poolsite.demo_erp.server import DemoSite

            demo = DemoSite(port=settings.POOL_DEMO_PORT).start()
            self.stdout.write(f"demo procurement site: {demo.base_url}")
        try:
            if not options["no_web"]:
                self._serve(options["host"], options["port"])
        finally:
            if demo is not None:
                demo.stop()

    def _serve(self, host: str, port: int) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from poolsite.asgi import application

        self.stdout.write(f"poolsite: http://{host}:{port}/  (admin: http://{host}:{port}/admin/)")
        Server(application=application,
               endpoints=build_endpoint_description_strings(host=host, port=port),
               signal_handlers=True, verbosity=0).run()
