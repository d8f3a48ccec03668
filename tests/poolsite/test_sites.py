"""Sites configured in the app: the page, its audit, its rules, and where they are used."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from pool_core.sites import load_presets
from poolsite.batches.models import Batch, ControlAction, Site
from poolsite.supervisor.pool_lifecycle import site_for_batch
from tests.poolsite.base import BaseTestCase

ACME = {"name": "Acme Coupa", "preset": "coupa", "base_url": "https://acme.coupahost.com/",
        "extra_hosts": "files.acme-cdn.net\n*.acme-docs.com"}


class SitesPageTestCase(BaseTestCase):
    def test_it_lets_an_operator_add_change_and_delete_a_site_audited(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.post(reverse("site_add"), ACME)
        self.assertRedirects(response, reverse("site_list"))
        site = Site.objects.get()
        self.assertEqual((site.preset, site.base_url, site.extra_hosts),
                         ("coupa", "https://acme.coupahost.com",
                          ["files.acme-cdn.net", "*.acme-docs.com"]))
        added = ControlAction.objects.get(action="add_site")
        self.assertEqual((added.username, added.outcome), ("alice", "done"))
        self.assertEqual(added.arguments["changes"]["base_url"],
                         [None, "https://acme.coupahost.com"])

        response = self.client.post(reverse("site_edit", args=[site.pk]),
                                    {**ACME, "extra_hosts": "files.acme-cdn.net"})
        self.assertRedirects(response, reverse("site_list"))
        changed = ControlAction.objects.get(action="change_site")
        self.assertEqual(changed.arguments["changes"],
                         {"extra_hosts": [["files.acme-cdn.net", "*.acme-docs.com"],
                                          ["files.acme-cdn.net"]]})
        self.assertEqual(changed.outcome_message, "site 'Acme Coupa': extra_hosts changed")

        response = self.client.post(reverse("site_delete", args=[site.pk]))
        self.assertRedirects(response, reverse("site_list"))
        self.assertFalse(Site.objects.exists())
        deleted = ControlAction.objects.get(action="delete_site")
        self.assertEqual((deleted.username, deleted.arguments["site"]), ("alice", "Acme Coupa"))

    def test_it_keeps_a_site_its_batches_run_on(self) -> None:
        site = self.make_site()
        self.make_batch(1, site=site)
        self.client.force_login(self.alice)
        response = self.client.post(reverse("site_delete", args=[site.pk]), follow=True)
        self.assertContains(response, "is used by 1 batch: it cannot be deleted")
        self.assertTrue(Site.objects.exists())
        self.assertFalse(ControlAction.objects.filter(action="delete_site").exists())

    def test_it_shows_viewers_the_sites_and_refuses_their_changes(self) -> None:
        site = self.make_site(extra_hosts=("files.example.com",))
        self.client.force_login(self.bob)
        response = self.client.get(reverse("site_list"))
        self.assertContains(response, "Demo site")
        self.assertContains(response, "files.example.com")
        self.assertNotContains(response, reverse("site_add"))
        self.assertEqual(self.client.get(reverse("site_add")).status_code, 403)
        self.assertEqual(self.client.post(reverse("site_add"), ACME).status_code, 403)
        self.assertEqual(self.client.post(reverse("site_edit", args=[site.pk]),
                                          ACME).status_code, 403)
        self.assertEqual(self.client.post(reverse("site_delete", args=[site.pk])).status_code,
                         403)
        self.assertEqual(Site.objects.get().name, "Demo site")
        self.assertFalse(ControlAction.objects.exists())

    def test_it_sends_anonymous_visitors_to_sign_in(self) -> None:
        client = Client()
        for response in (client.get(reverse("site_list")), client.get(reverse("site_add")),
                         client.post(reverse("site_add"), ACME)):
            self.assertEqual(response.status_code, 302)
            self.assertIn(reverse("login"), response["Location"])
        self.assertFalse(Site.objects.exists())

    def test_it_refuses_bad_addresses_and_hosts_with_a_clear_message(self) -> None:
        self.client.force_login(self.alice)
        cases = [
            ({"base_url": "ftp://acme.coupahost.com"}, "the scheme must be http or https"),
            ({"base_url": "https://"}, "has no host name"),
            ({"base_url": "https://user:pw@acme.coupahost.com"}, "user name or password"),
            ({"base_url": "http://10.1.2.3"},
             "preset &#x27;coupa&#x27; does not accept &#x27;http://10.1.2.3&#x27;: host "
             "10.1.2.3 is a loopback, private or link-local address"),
            ({"extra_hosts": "files.acme.net\nbad_host!"},
             "&#x27;bad_host!&#x27; is not a host name or *.domain pattern"),
            ({"extra_hosts": "*"}, "alone would allow every host"),
            ({"extra_hosts": "https://files.acme.net/x"}, "give a host name"),
            ({"preset": "nope"}, "Select a valid choice"),
        ]
        for change, message in cases:
            with self.subTest(change=change):
                response = self.client.post(reverse("site_add"), {**ACME, **change})
                self.assertContains(response, message, status_code=400)
                self.assertContains(response, "Nothing was saved", status_code=400)
        self.assertFalse(Site.objects.exists())
        self.assertFalse(ControlAction.objects.exists())

    def test_it_audits_changes_made_in_the_admin_too(self) -> None:
        self.client.force_login(self.root)
        response = self.client.post(reverse("admin:batches_site_add"), ACME)
        self.assertEqual(response.status_code, 302)
        site = Site.objects.get()
        self.assertEqual(site.extra_hosts, ["files.acme-cdn.net", "*.acme-docs.com"])
        self.client.post(reverse("admin:batches_site_delete", args=[site.pk]), {"post": "yes"})
        self.assertEqual(list(ControlAction.objects.order_by("id").values_list(
            "action", "username")), [("add_site", "root"), ("delete_site", "root")])


class UploadForASiteTestCase(BaseTestCase):
    def test_it_lists_the_sites_and_stores_the_chosen_one(self) -> None:
        self.make_site()
        acme = Site.objects.create(name="Acme Coupa", preset="coupa",
                                   base_url="https://acme.coupahost.com")
        self.client.force_login(self.alice)
        page = self.client.get(reverse("batch_upload"))
        self.assertContains(page, "Acme Coupa — https://acme.coupahost.com")
        self.assertContains(page, "Demo site — http://127.0.0.1:8001")
        upload = SimpleUploadedFile("a.csv", b"PO Number\nPO15262984\n")
        response = self.client.post(reverse("batch_upload"), {"file": upload,
                                                              "site": "Acme Coupa"})
        self.assertContains(response, "https://acme.coupahost.com/order_headers/15262984")
        confirm = response.context["confirm"]
        self.client.post(reverse("batch_confirm"),
                         {name: confirm[name].value() or "" for name in confirm.fields})
        batch = Batch.objects.get()
        self.assertEqual((batch.site, batch.site_preset, batch.site_base_url),
                         (acme, "coupa", "https://acme.coupahost.com"))
        upload_action = ControlAction.objects.get(action="upload")
        self.assertEqual(upload_action.arguments["site"], "Acme Coupa")

    def test_it_explains_how_to_add_a_site_when_there_is_none(self) -> None:
        self.client.force_login(self.alice)
        response = self.client.get(reverse("batch_upload"))
        self.assertContains(response, "No site is configured yet")
        self.assertContains(response, f'href="{reverse("site_add")}"')


class HostPresetTestCase(BaseTestCase):
    def test_it_builds_the_batch_preset_with_the_sites_extra_hosts(self) -> None:
        site = Site.objects.create(name="Acme", preset="coupa",
                                   base_url="https://buy.acme.example",
                                   extra_hosts=["files.acme-cdn.net", "*.acme-docs.com"])
        batch = self.make_batch(1, site=site)
        Batch.objects.filter(pk=batch.pk).update(site_preset="coupa",
                                                 site_base_url="https://old.coupahost.com")
        batch.refresh_from_db()
        preset = site_for_batch(batch, load_presets(), {})
        assert preset is not None
        self.assertEqual(preset.base_url, "https://buy.acme.example")
        self.assertIsNone(preset.check_url("https://buy.acme.example/order_headers/1"))
        self.assertIsNone(preset.check_url("https://files.acme-cdn.net/a.pdf"))
        self.assertIsNone(preset.check_url("https://eu.acme-docs.com/a.pdf"))
        self.assertIn("not in the allow-list", preset.check_url("https://evil.example/x") or "")
        # This host's own address for the preset still wins (the demo's port in tests).
        moved = site_for_batch(batch, load_presets(), {"coupa": "https://acme.coupahost.com"})
        assert moved is not None
        self.assertEqual(moved.base_url, "https://acme.coupahost.com")
        self.assertIsNone(moved.check_url("https://files.acme-cdn.net/a.pdf"))

    def test_it_keeps_batches_without_a_site_working(self) -> None:
        batch = self.make_batch(1, site_base_url="http://127.0.0.1:9999")
        preset = site_for_batch(batch, load_presets(), {})
        assert preset is not None
        self.assertEqual(preset.base_url, "http://127.0.0.1:9999")

    def test_it_keeps_the_demo_site_pointing_at_the_demo(self) -> None:
        first = Site.ensure("Demo site", "demo", "http://127.0.0.1:8001/", via="runpool")
        same = Site.ensure("Demo site", "demo", "http://127.0.0.1:8001", via="runpool")
        moved = Site.ensure("Demo site", "demo", "http://127.0.0.1:8123", via="runpool")
        self.assertEqual((first.pk, same.pk, moved.pk), (first.pk, first.pk, first.pk))
        self.assertEqual(Site.objects.get().base_url, "http://127.0.0.1:8123")
        self.assertEqual(list(ControlAction.objects.order_by("id").values_list(
            "action", "username")), [("add_site", "runpool"), ("change_site", "runpool")])
