"""Seed the director's default prompts (editable in the admin) and let ops edit them."""

from django.db import migrations

from mcn_site.lib.roles import sync_roles
from posts.director.prompts import DEFAULTS


def seed(apps, schema_editor):
    PromptTemplate = apps.get_model("posts", "PromptTemplate")
    for role, text in DEFAULTS.items():
        PromptTemplate.objects.get_or_create(
            role=role, version=1, defaults={"template": text, "description": "MCN OS default", "active": True}
        )
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("posts", "0006_prompt_templates")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
