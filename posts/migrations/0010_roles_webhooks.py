"""Webhook endpoints and their delivery log: give ops the new models' permissions."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles


def sync(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    # sync_roles grants what ROLES names in every app: after the other apps' role migrations.
    dependencies = [("posts", "0009_webhooks"), ("artists", "0003_roles_api_tokens")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
