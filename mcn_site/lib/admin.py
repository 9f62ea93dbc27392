"""Admin building blocks shared by the apps: per-artist scoping and thumbnails."""

from collections.abc import Callable

from django.contrib import admin
from django.db.models import QuerySet
from django.http import Http404
from django.utils.html import format_html


class ScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin that lists, opens and offers only what the user may see.

    `scope` returns the rows visible to a user (a selector); `scoped_fields` maps
    foreign-key and many-to-many field names to the selector that limits their
    choices. An object outside the scope is a 404 on its page, not a redirect
    that confirms it exists.
    """

    scope: Callable[..., QuerySet] | None = None  # set as staticmethod(selector)
    scoped_fields: dict[str, Callable[..., QuerySet]] = {}

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if self.scope is None:
            return qs
        return qs.filter(pk__in=self.scope(user=request.user).values("pk"))

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object, or you are not a member of its artist.")
        return obj

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.scoped_fields:
            kwargs["queryset"] = self.scoped_fields[db_field.name](user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name in self.scoped_fields:
            kwargs["queryset"] = self.scoped_fields[db_field.name](user=request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A changelist filter on a related field that lists only the rows the user may see.

    Django's RelatedFieldListFilter lists every related row, which would name other
    teams' artists in a producer's sidebar. Use it as `("artist", ScopedRelatedFieldListFilter)`
    on a ScopedAdmin whose `scoped_fields` names that field.
    """

    def field_choices(self, field, request, model_admin):
        visible = model_admin.scoped_fields[field.name](user=request.user)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(
            include_blank=False, limit_choices_to={"pk__in": visible.values("pk")}, ordering=ordering
        )


def thumbnail(file, *, size: int = 48, alt: str = "") -> str:
    """An <img> of an uploaded image for admin lists, or a dash when there is none."""
    if not file:
        return "–"
    return format_html(
        '<img src="{}" alt="{}" width="{}" height="{}" style="object-fit:cover;border-radius:6px">',
        file.url,
        alt,
        size,
        size,
    )


def badge(label: str, colour: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;font-size:11px;'
        'font-weight:600;white-space:nowrap">{}</span>',
        colour,
        label,
    )


class ReadOnlyAdmin:
    """For rows only the system writes (event trails, worker heartbeats): view, never add, edit or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyAdmin, admin.TabularInline):
    """A trail shown under its owner's form (job outputs, post events, schedule runs): never edited."""

    extra = 0
    can_delete = False
    show_change_link = False
