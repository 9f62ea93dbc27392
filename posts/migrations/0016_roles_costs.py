"""The cost ledger and its prices: ops manage rates (factory.Rate); every role views the ledger of its artists."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles


def sync(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    # sync_roles grants what ROLES names in every app: after the models it names exist.
    dependencies = [("posts", "0015_cost_ledger"), ("factory", "0010_rates"), ("artists", "0006_artist_budget")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
