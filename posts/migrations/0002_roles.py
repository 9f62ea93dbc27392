"""Create the staff roles Producer, Reviewer and Ops with their permissions (mcn_site.lib.roles.ROLES)."""

from django.db import migrations

from mcn_site.lib.roles import ROLES, sync_roles


def create_roles(apps, schema_editor):
    sync_roles(apps)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0001_initial"),
        ("artists", "0001_initial"),
        ("schedules", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
