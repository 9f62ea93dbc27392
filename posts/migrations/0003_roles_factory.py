"""Ops manage the factory: give the role its permissions on templates, jobs and workers."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles


def sync(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("posts", "0002_roles"), ("factory", "0001_initial")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
