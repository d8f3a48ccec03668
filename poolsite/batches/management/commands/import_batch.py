"""Import a CSV/XLSX file of POs as a batch, with the web form's validation.

    manage.py import_batch FILE [--name N] [--site NAME] [--sheet S] [--user U] [--check]

--site names a configured site (the Sites page); a preset name is still accepted when
no site has that name, as before sites were configured in the app.

Prints every problem (row, column, value) and exits 1 when the file is refused;
nothing is stored then. Shows a progress bar on a terminal.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from poolsite.batches.batch_import import batch_create, parse_upload, site_presets
from poolsite.batches.models import Site

PHASES = {"read": "reading", "check": "checking", "save": "saving"}


class ProgressBar:
    """A one-line bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream: Any, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        filled = int(self.width * done / max(total, 1))
        self.stream.write(f"\r{PHASES.get(phase, phase):<9} [{'#' * filled}"
                          f"{'.' * (self.width - filled)}] {done:>7,}/{total:,}")
        self.stream.flush()

    def close(self) -> None:
        if self._last:
            self._last = 0.0
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = "Import a CSV or XLSX file of POs as a batch (all rows or none)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--name", default="", help="batch name (default: file name)")
        parser.add_argument("--site", default="",
                            help="configured site name (default: the only one), or a "
                                 "preset name")
        parser.add_argument("--sheet", default="",
                            help="XLSX sheet (default: PO_Data if present, else the first)")
        parser.add_argument("--notes", default="")
        parser.add_argument("--user", default="", help="record this username as uploader")
        parser.add_argument("--check", action="store_true",
                            help="validate only; store nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        site, preset = self._site(options["site"])
        data = self._read(path)
        user = self._user(options["user"])
        # The terminal itself: self.stdout would end every redraw with a newline.
        bar = ProgressBar(sys.stdout) if sys.stdout.isatty() else None
        try:
            try:
                upload = parse_upload(data, filename=path.name, preset=preset, site=site,
                                      sheet=options["sheet"] or None, progress=bar)
            except KeyError as exc:  # the site's preset is no longer loaded
                raise CommandError(str(exc.args[0])) from None
            if bar:
                bar.close()
            if not upload.ok:
                self._report_problems(upload.problem_count, [str(p) for p in upload.problems])
            if options["check"]:
                self.stdout.write(self.style.SUCCESS(
                    f"{path.name}: {len(upload.rows)} POs, no problems (nothing stored)"))
                return
            batch = batch_create(upload, name=options["name"], uploaded_by=user,
                                 notes=options["notes"], progress=bar)
        finally:
            if bar:
                bar.close()
        self.stdout.write(self.style.SUCCESS(
            f"batch #{batch.pk} {batch.name!r}: {batch.po_count} POs for site "
            f"{batch.site_name()}"))

    def _site(self, name: str) -> tuple[Site | None, str]:
        """The configured site called `name` (or the only one), else a preset name."""
        if not name:
            sites = list(Site.objects.all()[:2])
            if len(sites) == 1:
                return sites[0], ""
            if not sites:  # as before sites were configured in the app
                self.stderr.write("no site is configured: using the demo preset")
                return None, "demo"
            known = ", ".join(Site.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"say which site with --site NAME (configured sites: {known})")
        site = Site.objects.filter(name=name).first()
        if site is not None:
            return site, ""
        if name in site_presets():
            return None, name
        known = ", ".join(Site.objects.values_list("name", flat=True)) or "none yet"
        raise CommandError(f"no site named {name!r} (configured sites: {known}; add one on "
                           "the Sites page)")

    def _read(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > settings.POOL_MAX_UPLOAD_BYTES:
                raise CommandError(f"{path}: the file is {size:,} bytes; the limit is "
                                   f"{settings.POOL_MAX_UPLOAD_BYTES:,} bytes "
                                   "(POOL_MAX_UPLOAD_BYTES)")
            return path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}") from None

    def _user(self, username: str) -> Any:
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    def _report_problems(self, count: int, problems: list[str]) -> None:
        for problem in problems:
            self.stderr.write(f"  {problem}")
        if count > len(problems):
            self.stderr.write(f"  ... {count - len(problems)} more")
        raise CommandError(f"{count} problem{'s' if count != 1 else ''}: nothing was stored")
