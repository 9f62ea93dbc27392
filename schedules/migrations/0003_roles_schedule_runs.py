"""Everyone who sees schedules may read what they did: give the roles the new model's view permission."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles


def sync(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("schedules", "0002_schedule_runs"), ("posts", "0007_default_prompts")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
