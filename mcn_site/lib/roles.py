"""The three staff roles and the questions every app asks about them.

Groups are created with their permissions by the data migration
posts/migrations/0002_roles.py; these helpers are the only place that reads them.
"""

PRODUCER = "Producer"
REVIEWER = "Reviewer"
OPS = "Ops"


def is_ops(user) -> bool:
    """Ops (and superusers) see and manage every artist; everybody else sees their memberships."""
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name=OPS).exists()


def can_review(user) -> bool:
    """Only reviewers and ops may approve or reject a post."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("posts.review_post"))
