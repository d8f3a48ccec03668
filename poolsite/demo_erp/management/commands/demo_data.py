"""Load the demo: an admin account and a sample batch pointing at the demo site.

Idempotent. The admin's password is generated once, kept owner-only in the data
folder and printed on every run, so `make run` always tells the operator how to sign
in; on a terminal the operator may choose it instead.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

ADMIN_USERNAME = "admin"
SAMPLE_BATCH = "Demo batch"


class Command(BaseCommand):
    help = "Create the demo admin account and the sample batch (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-input", action="store_true",
                            help="never prompt; generate the admin password")
        parser.add_argument("--url", default="http://127.0.0.1:8000/",
                            help="where the product will answer (for the sign-in hint)")

    def handle(self, *args: Any, **options: Any) -> None:
        interactive = sys.stdin.isatty() and not options["no_input"]
        password = self._ensure_admin(interactive)
        self._ensure_sample_batch()
        self.stdout.write(self.style.SUCCESS(
            f"Sign in at {options['url']} as {ADMIN_USERNAME!r}"
            + (f" with password {password!r}" if password else "")
        ))

    def _ensure_admin(self, interactive: bool) -> str:
        """Create the admin once; return the password to show (empty if chosen by hand)."""
        secret_file = Path(settings.DATA_DIR) / "demo-admin-password.txt"
        user_model = get_user_model()
        if user_model.objects.filter(username=ADMIN_USERNAME).exists():
            return secret_file.read_text().strip() if secret_file.exists() else ""
        if interactive:
            from django.core.management import call_command

            self.stdout.write("Create the admin account for poolsite:")
            call_command("createsuperuser", username=ADMIN_USERNAME, email="")
            return ""
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(ADMIN_USERNAME, "", password)
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return password

    def _ensure_sample_batch(self) -> None:
        """Create the sample batch once: 40 ordinary POs and the misbehaving ones."""
        from poolsite.batches.batch_import import batch_import_rows
        from poolsite.batches.models import DEMO_SITE, Batch, Site
        from poolsite.demo_erp import catalog

        base = settings.POOL_DEMO_URL
        site = Site.ensure(DEMO_SITE, "demo", base, via="demo_data")
        if Batch.objects.filter(name=SAMPLE_BATCH).exists():
            return
        rows = catalog.demo_batch(base, 40) + catalog.special_batch(base)
        batch = batch_import_rows(rows, name=SAMPLE_BATCH, site=site,
                                  notes="Demo POs on the demo procurement site")
        self.stdout.write(f"sample batch #{batch.pk}: {batch.po_count} POs on {base}")
