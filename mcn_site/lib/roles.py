"""The three staff roles: what each may do, and the questions every app asks about them.

ROLES is the one definition. Migrations call `sync_roles(apps)` whenever it
changes (posts/migrations/0002_roles.py first); `seed_demo` calls it too, so a
flushed test database or a hand-cleaned one gets its groups back.
Producers and reviewers still see only the artists they are members of
(artists.selectors); these permissions say what they may do there.
"""

PRODUCER = "Producer"
REVIEWER = "Reviewer"
OPS = "Ops"

_CRUD = ["view", "add", "change", "delete"]

ROLES: dict[str, dict[str, list[str]]] = {
    PRODUCER: {
        "artists.artist": ["view", "add", "change"],
        "artists.artistimage": _CRUD,
        "artists.voice": ["view", "add", "change"],
        "artists.wardrobe": ["view", "add", "change"],
        "artists.source": ["view", "add", "change"],
        "schedules.schedule": _CRUD,
        "schedules.schedulerun": ["view"],
        "posts.post": _CRUD,
        "posts.shot": _CRUD,
        "posts.postevent": ["view"],
        "posts.costentry": ["view"],  # their artists' costs (posts.costs.cost_entries_visible_to)
        "artists.apitoken": ["view", "add", "change"],  # their own tokens only (artists.admin)
    },
    REVIEWER: {
        "artists.artist": ["view"],
        "artists.artistimage": ["view"],
        "artists.voice": ["view"],
        "artists.wardrobe": ["view"],
        "artists.source": ["view"],
        "schedules.schedule": ["view"],
        "schedules.schedulerun": ["view"],
        "posts.post": ["view", "change", "review"],
        "posts.shot": ["view"],
        "posts.postevent": ["view"],
        "posts.costentry": ["view"],  # what approving will cost, on the storyboard page
        "artists.apitoken": ["view", "add", "change"],  # their own tokens only (artists.admin)
    },
    OPS: {
        "auth.user": ["view", "add", "change"],  # ops decide who works on which artist
        "auth.group": ["view"],
        "artists.artist": _CRUD,
        "artists.artistimage": _CRUD,
        "artists.voice": _CRUD,
        "artists.wardrobe": _CRUD,
        "artists.source": _CRUD,
        "schedules.schedule": _CRUD,
        "schedules.schedulerun": ["view"],
        "posts.post": [*_CRUD, "review"],
        "posts.shot": _CRUD,
        "posts.postevent": ["view"],
        "factory.workflowtemplate": _CRUD,
        "factory.job": ["view", "add", "change"],
        "factory.jobevent": ["view"],
        "factory.joboutput": ["view"],
        "factory.gpuworker": ["view"],
        "factory.rate": _CRUD,  # the cost ledger's prices (factory.costs)
        "posts.costentry": ["view"],  # the ledger: written by posts.costs only
        "posts.shotworkflow": _CRUD,
        "posts.prompttemplate": _CRUD,
        "posts.webhook": _CRUD,  # integrations' endpoints (URLs and signing secrets): ops only
        "posts.webhookdelivery": ["view"],
        "artists.apitoken": _CRUD,  # everybody's: ops issue and revoke integration tokens
    },
}


def _codename(action: str, model: str) -> str:
    return "review_post" if action == "review" else f"{action}_{model}"


def _in_registry(apps, app_label: str, model: str) -> bool:
    try:
        apps.get_model(app_label, model)
    except LookupError:
        return False
    return True


def sync_roles(apps, *, create_missing_permissions: bool = True) -> None:
    """Create the groups and give each exactly the permissions ROLES lists.

    `apps` is a migration's historical registry or django.apps.apps.
    """
    from django.contrib.auth.management import create_permissions

    if create_missing_permissions:
        # Permissions are normally made after all migrations ran; make them now to assign them.
        for app_config in apps.get_app_configs():
            historical = getattr(app_config, "models_module", None) is None
            if historical:
                app_config.models_module = True
            create_permissions(app_config, verbosity=0)
            if historical:
                app_config.models_module = None
    from django.apps import apps as installed_apps

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, grants in ROLES.items():
        wanted = []
        for label, actions in grants.items():
            app_label, model = label.split(".")
            if apps is not installed_apps and not _in_registry(apps, app_label, model):
                # A migration of one app can run before another app's first migration: its models'
                # permissions are granted by the later roles migration that depends on them.
                continue
            codenames = [_codename(action, model) for action in actions]
            found = list(Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))
            missing = set(codenames) - {p.codename for p in found}
            if missing:
                raise RuntimeError(f"Permissions not found for {role}: {sorted(missing)}")
            wanted += found
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(wanted)


def is_ops(user) -> bool:
    """Ops (and superusers) see and manage every artist; everybody else sees their memberships."""
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name=OPS).exists()


def can_review(user) -> bool:
    """Only reviewers and ops may approve or reject a post."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("posts.review_post"))
