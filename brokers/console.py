"""Console scoping for broker staff: one base class for every brokerage admin page.

Who sees what:

* **platform staff** (``is_staff`` users with no :class:`~brokers.models.BrokerStaff` row, and every
  superuser) see and act on everything, with Django's model permissions as usual;
* **broker staff** (``is_staff`` users with a ``BrokerStaff`` row) see the rows of their broker's
  subtree only (their broker and every broker below it), on every page: changelists, change and
  history views by id (another broker's id is "not found"), foreign-key choices, autocomplete,
  list filters. They may view; what else they may do each admin says (``broker_staff_can_add``...).

How a model declares its way to the broker: set ``broker_path`` on its admin to the ORM path from
the model to its ``Broker`` (``"broker"`` for a model with a ``broker`` FK, ``"client__broker"``
through a client, ``""`` for ``Broker`` itself)::

    @admin.register(WebhookDelivery)
    class WebhookDeliveryAdmin(BrokerScopedAdmin):
        broker_path = "broker"

The scope is ``<broker_path>__path__startswith=<staff broker path>``: one indexed prefix match.
"""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet

from brokers.models import Broker, BrokerStaff

_CACHE_ATTR = "_broker_staff_broker"


def staff_broker(request) -> Broker | None:
    """The broker whose staff the request's user is, or None for platform staff (cached per request)."""
    if not hasattr(request, _CACHE_ATTR):
        user = request.user
        broker = None
        if user.is_authenticated and user.is_active and not user.is_superuser:
            row = BrokerStaff.objects.select_related("broker").filter(user_id=user.pk).first()
            broker = row.broker if row else None
        setattr(request, _CACHE_ATTR, broker)
    return getattr(request, _CACHE_ATTR)


def scope_queryset(qs: QuerySet, broker: Broker, broker_path: str) -> QuerySet:
    prefix = f"{broker_path}__" if broker_path else ""
    return qs.filter(**{f"{prefix}path__startswith": broker.path})


class BrokerScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin whose rows broker staff see only within their subtree (see the module docstring)."""

    broker_path: str = "broker"
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    broker_staff_can_add = False
    broker_staff_can_change = False
    broker_staff_can_delete = False

    # --- scope ---------------------------------------------------------------------------------------

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        broker = staff_broker(request)
        return scope_queryset(qs, broker, self.broker_path) if broker is not None else qs

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        self._scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _scope_choices(self, db_field, request, kwargs) -> None:
        """FK/M2M choices for broker staff: the related model's scoped queryset, or nothing."""
        broker = staff_broker(request)
        if broker is None or "queryset" in kwargs:
            return
        related = self.admin_site._registry.get(db_field.related_model)
        if isinstance(related, BrokerScopedAdmin):
            kwargs["queryset"] = related.get_queryset(request)
        else:  # a model no scoped admin describes: broker staff choose among none of its rows
            kwargs["queryset"] = db_field.related_model._default_manager.none()

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if staff_broker(request) is None:
            return filters
        # a related-field filter lists every row of the related table; list only those in scope
        out = []
        for f in filters:
            if isinstance(f, str) and self._is_relation(f):
                out.append((f, admin.RelatedOnlyFieldListFilter))
            else:
                out.append(f)
        return out

    def _is_relation(self, name: str) -> bool:
        model = self.model
        field = None
        for part in name.split("__"):
            field = model._meta.get_field(part)
            model = field.related_model if field.is_relation else None
            if model is None:
                break
        return bool(field is not None and field.is_relation)

    # --- permissions --------------------------------------------------------------------------------

    def _staff(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and staff_broker(request) is not None

    def has_module_permission(self, request) -> bool:
        return self._staff(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        if self._staff(request):
            return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()
        return super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args) -> bool:
        if self._staff(request):
            return self.broker_staff_can_add
        return super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        if self._staff(request):
            return self.broker_staff_can_change and (obj is None or self.has_view_permission(request, obj))
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if self._staff(request):
            return self.broker_staff_can_delete and (obj is None or self.has_view_permission(request, obj))
        return super().has_delete_permission(request, obj)


class BrokerScopedInline(admin.TabularInline):
    """An inline under a scoped admin: its parent row is already in scope; never edited by broker staff."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_staff
