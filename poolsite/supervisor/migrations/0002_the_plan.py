"""Create the single PoolPlan row, so reading the plan (a GET) never has to write it."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create_plan(apps: Any, schema_editor: Any) -> None:
    apps.get_model("supervisor", "PoolPlan").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("supervisor", "0001_initial")]

    operations = [migrations.RunPython(create_plan, migrations.RunPython.noop)]
