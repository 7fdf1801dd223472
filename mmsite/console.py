"""Pieces of the operator console (Django admin) shared by every app."""

from django.contrib import admin


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """A log-like model: listed and viewable, never added, changed or deleted from the console
    (its rows change only through services)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInlineMixin:
    """For inlines of rows that change only through services: shown, never added or edited."""

    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
