"""Staff accounts in the admin: ops decide who works here, only a superuser hands out more than a role.

Ops hold auth.change_user (mcn_site.lib.roles) so they can add colleagues and give them a role. Django's
UserAdmin would also let them tick "superuser" or pick any permission or group, for anyone including
themselves: for everyone but a superuser those fields are read-only (a POST that sends them changes
nothing), the groups offered are the roles, and a superuser's account is view-only.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group

from mcn_site.lib.roles import ROLES

User = get_user_model()

# What only a superuser may grant: everything beyond the roles' groups.
SUPERUSER_ONLY_FIELDS = ("is_superuser", "user_permissions")


class StaffUserAdmin(UserAdmin):
    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return fields
        return fields + SUPERUSER_ONLY_FIELDS

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            # A group a superuser made may carry any permission: ops give roles, nothing else.
            kwargs["queryset"] = Group.objects.filter(name__in=ROLES).order_by("name")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        # The groups ops are not offered are not theirs to take away either: keep them.
        kept = list(form.instance.groups.exclude(name__in=ROLES)) if change and not request.user.is_superuser else []
        super().save_related(request, form, formsets, change)
        form.instance.groups.add(*kept)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # a superuser's password, groups and status are a superuser's business
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
