"""An existing database gets Sites for its batches' (preset, address) pairs."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TransactionTestCase

BEFORE = [("batches", "0004_session_actions")]
AFTER = [("batches", "0006_sites_from_batches")]


class SiteMigrationTestCase(TransactionTestCase):
    def test_it_gives_existing_batches_a_site_per_preset_and_address(self) -> None:
        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        batch_model = old.get_model("batches", "Batch")
        common = {"source_name": "a.csv", "source_sha256": "0" * 64}
        batch_model.objects.create(name="demo 1", site_preset="demo",
                                   site_base_url="http://127.0.0.1:8001", **common)
        batch_model.objects.create(name="demo 2", site_preset="demo",
                                   site_base_url="http://127.0.0.1:8001", **common)
        batch_model.objects.create(name="acme", site_preset="coupa",
                                   site_base_url="https://acme.coupahost.com", **common)
        batch_model.objects.create(name="urls only", site_preset="generic",
                                   site_base_url="", **common)

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        sites = {s.name: s for s in new.get_model("batches", "Site").objects.all()}
        self.assertEqual(set(sites), {"Demo site", "coupa acme.coupahost.com"})
        batches = {b.name: b.site_id for b in new.get_model("batches", "Batch").objects.all()}
        self.assertEqual(batches, {"demo 1": sites["Demo site"].pk,
                                   "demo 2": sites["Demo site"].pk,
                                   "acme": sites["coupa acme.coupahost.com"].pk,
                                   "urls only": None})
        permission = new.get_model("auth", "Permission")
        viewers = new.get_model("auth", "Group").objects.get(name="viewers")
        self.assertTrue(viewers.permissions.filter(codename="view_site").exists())
        self.assertTrue(permission.objects.filter(codename="delete_site").exists())
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest
