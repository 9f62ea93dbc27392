"""Ops map shot kinds to factory templates: give the role the new model's permissions."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles


def sync(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("posts", "0004_shot_job_and_workflows")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
