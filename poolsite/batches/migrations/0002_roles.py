"""Create the "viewers" and "operators" groups with their permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWER_CODENAMES = (
    "view_batch", "view_purchaseorder", "view_run", "view_attempt", "view_document",
    "view_controlaction",
)
OPERATOR_CODENAMES = (*VIEWER_CODENAMES, "add_batch", "control_pool", "change_purchaseorder")


def create_roles(apps: Any, schema_editor: Any) -> None:
    # Permissions are normally created after all migrations (post_migrate); make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, codenames in (("viewers", VIEWER_CODENAMES), ("operators", OPERATOR_CODENAMES)):
        group, _ = group_model.objects.get_or_create(name=name)
        perms = permission_model.objects.filter(content_type__app_label="batches",
                                                codename__in=codenames)
        group.permissions.add(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
