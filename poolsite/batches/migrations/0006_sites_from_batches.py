"""Give existing batches a Site, and the roles their Sites permissions.

Each distinct (preset, address) of existing batches becomes a Site, so old batches keep
their address and show up under the site they ran on. Batches without an address keep
no site (they carry a URL per PO). Nothing is validated here: these addresses already
worked, and a migration must not refuse a database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWER_CODENAMES = ("view_site",)
OPERATOR_CODENAMES = ("view_site", "add_site", "change_site", "delete_site")


def _name(preset: str, base_url: str, taken: set[str]) -> str:
    if preset == "demo" and "Demo site" not in taken:
        return "Demo site"  # the one `runpool --with-demo-site` keeps up to date
    name = f"{preset} {urlsplit(base_url).netloc or base_url}"[:100]
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name[:95]} ({n})", n + 1
    return candidate


def sites_from_batches(apps: Any, schema_editor: Any) -> None:
    batch_model = apps.get_model("batches", "Batch")
    site_model = apps.get_model("batches", "Site")
    taken = set(site_model.objects.values_list("name", flat=True))
    pairs = (batch_model.objects.filter(site__isnull=True).exclude(site_base_url="")
             .order_by().values_list("site_preset", "site_base_url").distinct())
    for preset, base_url in sorted(set(pairs)):
        site = site_model.objects.filter(preset=preset, base_url=base_url.rstrip("/")).first()
        if site is None:
            site = site_model.objects.create(name=_name(preset, base_url, taken), preset=preset,
                                             base_url=base_url.rstrip("/"), extra_hosts=[])
            taken.add(site.name)
        batch_model.objects.filter(site__isnull=True, site_preset=preset,
                                   site_base_url=base_url).update(site=site)


def grant_site_permissions(apps: Any, schema_editor: Any) -> None:
    # Permissions are normally created after all migrations (post_migrate); make them now.
    app_config = apps.get_app_config("batches")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, codenames in (("viewers", VIEWER_CODENAMES), ("operators", OPERATOR_CODENAMES)):
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.add(*permission_model.objects.filter(
            content_type__app_label="batches", codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0005_sites_and_sources"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(sites_from_batches, migrations.RunPython.noop),
        migrations.RunPython(grant_site_permissions, migrations.RunPython.noop),
    ]
