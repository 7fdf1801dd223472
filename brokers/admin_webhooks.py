"""The console of webhook endpoints, deliveries and their attempts (docs/webhooks.md, "Console").

Scoped per broker through ``BrokerScopedAdmin``: broker staff see their subtree's endpoints and
deliveries only. Deliveries are read-only (they change through the delivery service); the
"redeliver" action sends the selected ones again. Endpoint secrets are never shown, except once, on
the page that answers creating an endpoint or rotating its secret (``Cache-Control: no-store``).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.utils.html import format_html

from brokers.console import BrokerScopedAdmin, BrokerScopedInline
from brokers.models import Broker, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from brokers.services.webhooks import (
    RedeliveryRefused,
    webhook_endpoint_set,
    webhook_endpoint_update,
    webhook_redeliver,
)


def _secret_page(admin_obj, request, secrets: list[tuple[WebhookEndpoint, str]], title: str) -> TemplateResponse:
    response = TemplateResponse(
        request,
        "admin/brokers/webhookendpoint/secret.html",
        {**admin_obj.admin_site.each_context(request), "opts": admin_obj.opts, "title": title, "secrets": secrets},
    )
    response["Cache-Control"] = "no-store"
    return response


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ("broker", "url", "active")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    broker_staff_can_add = True
    broker_staff_can_change = True
    form = WebhookEndpointForm
    list_display = ("broker", "url", "active", "secret_rotated_at", "updated_at")
    list_filter = ("active",)
    search_fields = ("url", "broker__name")
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request, obj=None):
        # the broker of an endpoint never changes; the secret is not a field at all
        return ("broker", "secret_rotated_at", "created_at") if obj else ()

    def get_fields(self, request, obj=None):
        return ("broker", "url", "active", "secret_rotated_at", "created_at") if obj else ("broker", "url")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # switch it off instead: its deliveries stay on record

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = self.get_form(request)(request.POST or None)
        if request.method == "POST" and form.is_valid():
            broker: Broker = form.cleaned_data["broker"]
            secret = webhook_endpoint_set(broker=broker, url=form.cleaned_data["url"])
            endpoint = WebhookEndpoint.objects.get(broker=broker)
            return _secret_page(self, request, [(endpoint, secret)], "Webhook endpoint set")
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        # changes only (adding goes through add_view): URL and on/off, keeping the secret
        webhook_endpoint_update(endpoint=obj, url=obj.url, active=obj.active)

    @admin.action(description="Rotate the secret of the selected endpoints (shown once)")
    def rotate_secret(self, request, queryset):
        if not all(self.has_change_permission(request, endpoint) for endpoint in queryset):
            raise PermissionDenied
        rotated = []
        for endpoint in queryset.select_related("broker"):
            try:
                secret = webhook_endpoint_set(broker=endpoint.broker, url=endpoint.url)
            except ValidationError as exc:
                self.message_user(request, f"{endpoint}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            endpoint.refresh_from_db()
            rotated.append((endpoint, secret))
        if not rotated:
            return None
        return _secret_page(self, request, rotated, "Webhook secrets rotated")


class WebhookAttemptInline(BrokerScopedInline):
    model = WebhookAttempt
    fields = ("number", "url", "started_at", "finished_at", "http_status", "error", "duration_ms", "response_excerpt")
    readonly_fields = fields
    ordering = ("number",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    list_display = (
        "event_id",
        "broker",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    )
    list_filter = ("status", "event_type", "broker")
    search_fields = ("event_type", "broker__name")
    date_hierarchy = "created_at"
    list_select_related = ("broker",)
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]
    fields = (
        "event_id",
        "broker",
        "event_type",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
        "give_up_at",
        "claimed_until",
        "delivered_at",
        "last_error",
        "pretty_body",
    )
    readonly_fields = fields

    @admin.display(description="body (as sent)")
    def pretty_body(self, obj):
        try:
            text = json.dumps(json.loads(obj.body_text), indent=2, sort_keys=True)
        except ValueError:
            text = obj.body_text
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", text)

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Redeliver the selected webhooks now")
    def redeliver(self, request, queryset) -> None:
        sent, refused = 0, []
        for delivery_id in queryset.values_list("pk", flat=True):  # the scoped queryset: only rows in view
            try:
                webhook_redeliver(delivery_id=delivery_id)
                sent += 1
            except RedeliveryRefused as exc:
                refused.append(f"{delivery_id}: {exc}")
        if sent:
            self.message_user(request, f"Queued {sent} webhook(s) for redelivery.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not redelivered: " + "; ".join(refused), messages.WARNING)
