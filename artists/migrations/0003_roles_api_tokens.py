"""API tokens: producers and reviewers manage their own, ops everybody's."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles


def sync(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    # sync_roles needs every model ROLES names, so this runs after the other apps' latest migrations.
    dependencies = [
        ("artists", "0002_api_tokens"),
        ("posts", "0008_production"),
        ("schedules", "0003_roles_schedule_runs"),
        ("factory", "0002_gpu_worker_labels"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
