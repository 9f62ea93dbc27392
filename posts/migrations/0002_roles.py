"""Create the staff roles Producer, Reviewer and Ops with their permissions.

Producers and reviewers still see only the artists they are members of (see
artists.selectors); these permissions say what they may do there.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APP_MODELS = {
    "artists": ["artist", "artistimage", "voice", "wardrobe", "source"],
    "schedules": ["schedule"],
    "posts": ["post", "shot", "postevent"],
}

ROLES = {
    "Producer": {
        "artists.artist": ["view", "change"],
        "artists.artistimage": ["view", "add", "change", "delete"],
        "artists.voice": ["view", "add", "change"],
        "artists.wardrobe": ["view", "add", "change"],
        "artists.source": ["view", "add", "change"],
        "schedules.schedule": ["view", "add", "change", "delete"],
        "posts.post": ["view", "add", "change", "delete"],
        "posts.shot": ["view", "add", "change", "delete"],
        "posts.postevent": ["view"],
    },
    "Reviewer": {
        "artists.artist": ["view"],
        "artists.artistimage": ["view"],
        "artists.voice": ["view"],
        "artists.wardrobe": ["view"],
        "artists.source": ["view"],
        "schedules.schedule": ["view"],
        "posts.post": ["view", "change", "review"],
        "posts.shot": ["view"],
        "posts.postevent": ["view"],
    },
    # Ops: everything in the product's apps (factory permissions join in the factory's own migrations).
    "Ops": {f"{app}.{model}": ["view", "add", "change", "delete"] for app, models in APP_MODELS.items() for model in models}
    | {"posts.post": ["view", "add", "change", "delete", "review"]},
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; make them now so we can assign them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, grants in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        for label, actions in grants.items():
            app_label, model = label.split(".")
            codenames = [f"{action}_{model}" if action != "review" else "review_post" for action in actions]
            perms = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            missing = set(codenames) - set(perms.values_list("codename", flat=True))
            if missing:
                raise RuntimeError(f"Permissions not found for {role}: {sorted(missing)}")
            group.permissions.add(*perms)


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
