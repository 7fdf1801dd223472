"""The operator console for the MM engine (Django admin).

What operators may edit here is configuration: clients' display settings, exchange accounts,
tournaments' quoting parameters, fixtures. State that only the engine's services may change
(order status, matched stake, settlement, trading controls) is read-only, and every state change
the console offers is an action that calls a service, with ``admin:<username>`` as the actor:
client pause/resume/stop/start, cancel orders, revoke API keys, system pause/stop/resume and the
emergency switch.

Credentials are write-only: an exchange account's credentials can be replaced or cleared but are
never rendered, nor is their ciphertext; an API key is shown once, in the response that created it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from hedging.models import HedgeBet
from mmsite.console import ReadOnlyInlineMixin, ReadOnlyModelAdmin
from trading.admin_settlement import FixtureSettlementAdminMixin
from trading.choices import OPEN_ORDER_STATUSES, ControlAction, TradingStatus
from trading.models import (
    ApiKey,
    Client,
    ClientTradingState,
    ExchangeAccount,
    Fill,
    Fixture,
    LiveQuote,
    Order,
    OutcomeMarket,
    PlacementAttempt,
    PnlDay,
    PnlDirtyDay,
    QuotingRule,
    SystemTradingState,
    Tournament,
    TradingControlEvent,
)
from trading.selectors.controls import derive_status, system_state
from trading.services import controls
from trading.services.clients import api_key_create, api_key_revoke, client_get_or_create
from trading.services.orders import CancelFailed, OrderNotOpen, order_cancel

CONSOLE_REASON = "console action"


def actor_of(request: HttpRequest) -> str:
    """The actor recorded for a console action."""
    return f"admin:{request.user.username}"


def _link(obj, text=None) -> str:
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


class ReadOnlyInline(ReadOnlyInlineMixin, admin.TabularInline):
    extra = 0
    show_change_link = True


# --- clients ---------------------------------------------------------------------------------------


class ClientTradingStateInline(ReadOnlyInlineMixin, admin.StackedInline):
    model = ClientTradingState
    fields = ("manual_paused", "manual_stopped", "soft_paused", "soft_pause_reason", "updated_at")
    readonly_fields = fields
    verbose_name_plural = "trading state (change it with the actions on the client list)"


class ApiKeyInline(ReadOnlyInline):
    model = ApiKey
    fields = ("key_prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    verbose_name_plural = "API keys (create and revoke them under Client API keys)"

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"mm_{obj.prefix}_…"


class ExchangeAccountInline(ReadOnlyInline):
    model = ExchangeAccount
    fields = ("exchange", "username", "active", "max_outcome_stake", "balance", "credentials_set")
    readonly_fields = fields

    @admin.display(boolean=True, description="credentials set")
    def credentials_set(self, obj: ExchangeAccount) -> bool:
        return obj.has_credentials


def _report_failed_cancels(model_admin: admin.ModelAdmin, request, failed: list) -> None:
    """Say which orders a venue did not confirm cancelled (they stay open; repeating retries them)."""
    if failed:
        detail = "; ".join(f"order {f.order_id}: {f.message}" for f in failed[:20])
        model_admin.message_user(
            request,
            f"{len(failed)} order(s) are still open because their venue did not confirm the cancel "
            f"(repeat the action to retry): {detail}",
            messages.ERROR,
        )


def _client_state(client: Client) -> ClientTradingState:
    try:
        return client.trading_state
    except ClientTradingState.DoesNotExist:  # a client made outside client_get_or_create
        return ClientTradingState(client=client)


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "hedge_bookmaker", "odds_format", "quote_all_fixtures", "created_at")
    list_select_related = ("hedge_bookmaker", "trading_state")
    list_filter = (
        "trading_state__manual_paused",
        "trading_state__manual_stopped",
        "trading_state__soft_paused",
        "odds_format",
        "quote_all_fixtures",
        "hedge_bookmaker",
    )
    search_fields = ("name", "display_name")
    autocomplete_fields = ("hedge_bookmaker",)
    fields = (
        "name",
        "display_name",
        "hedge_bookmaker",
        "odds_format",
        "quote_all_fixtures",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("created_at", "updated_at")
    inlines = (ClientTradingStateInline, ExchangeAccountInline, ApiKeyInline)
    actions = ("pause_clients", "resume_clients", "stop_clients", "start_clients")

    def get_list_display(self, request):
        system = system_state()  # one read per page, not one per row

        @admin.display(description="trading status")
        def trading_status(obj: Client) -> str:
            return derive_status(system=system, state=_client_state(obj))

        return ("name", "display_name", trading_status, *self.list_display[2:])

    def get_inline_instances(self, request, obj=None):
        return super().get_inline_instances(request, obj) if obj is not None else []

    def get_readonly_fields(self, request, obj=None):
        # The name decides the hedge bookmaker and is what API clients see: fixed once created.
        return (*self.readonly_fields, "name") if obj is not None else self.readonly_fields

    def save_model(self, request, obj: Client, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # Creation goes through the service, which also creates the bookmaker and trading state.
        client, _ = client_get_or_create(name=obj.name, display_name=obj.display_name)
        config = {"odds_format": obj.odds_format, "quote_all_fixtures": obj.quote_all_fixtures}
        if obj.hedge_bookmaker_id:
            config["hedge_bookmaker_id"] = obj.hedge_bookmaker_id
        Client.objects.filter(pk=client.pk).update(**config)
        obj.pk = client.pk
        obj._state.adding = False
        obj.refresh_from_db()

    def _control(self, request, queryset, service: Callable, done: str) -> None:
        actor = actor_of(request)
        names, failed = [], []
        for client in queryset.order_by("pk"):
            report = service(client=client, actor=actor, reason=CONSOLE_REASON)
            names.append(client.name)
            if report is not None:  # the cancelling transitions report what the venues answered
                failed.extend(report.failed)
        if names:
            self.message_user(request, f"{done}: {', '.join(names)}", messages.SUCCESS)
        _report_failed_cancels(self, request, failed)

    @admin.action(description="Pause selected clients (keep resting orders, post no new ones)", permissions=["change"])
    def pause_clients(self, request, queryset) -> None:
        self._control(request, queryset, controls.client_pause, "Paused")

    @admin.action(description="Resume selected clients (after a pause)", permissions=["change"])
    def resume_clients(self, request, queryset) -> None:
        self._control(request, queryset, controls.client_resume, "Resumed")

    @admin.action(description="Stop selected clients (cancel every open order)", permissions=["change"])
    def stop_clients(self, request, queryset) -> None:
        self._control(request, queryset, controls.client_stop, "Stopped")

    @admin.action(description="Start selected clients (after a stop)", permissions=["change"])
    def start_clients(self, request, queryset) -> None:
        self._control(request, queryset, controls.client_start, "Started")


@admin.register(ClientTradingState)
class ClientTradingStateAdmin(ReadOnlyModelAdmin):
    list_display = ("client", "manual_paused", "manual_stopped", "soft_paused", "soft_pause_reason", "updated_at")
    list_select_related = ("client",)
    list_filter = ("manual_paused", "manual_stopped", "soft_paused")
    search_fields = ("client__name", "soft_pause_reason")


# --- API keys ----------------------------------------------------------------------------------------


class ApiKeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", "active"), ("revoked", "revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here (client + name) and shown once, in the page that answers the creation;
    only the prefix and the SHA-256 are stored. They are revoked, never deleted (audit)."""

    list_display = ("key_prefix", "client", "name", "created_at", "last_used_at", "revoked_at", "is_active")
    list_select_related = ("client",)
    list_filter = (ApiKeyStateFilter, "client")
    search_fields = ("prefix", "name", "client__name")
    autocomplete_fields = ("client",)
    date_hierarchy = "created_at"
    actions = ("revoke_keys",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("client", "name")
        return ("key_prefix", "client", "name", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("key_prefix", "client", "created_at", "last_used_at", "revoked_at")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="key", ordering="prefix")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"mm_{obj.prefix}_…"

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = api_key_create(client=obj.client, name=obj.name)
        for f in ("pk", "prefix", "key_hash", "created_at"):
            setattr(obj, f, getattr(key, f))
        obj._state.adding = False
        obj._state.db = key._state.db
        request._new_raw_api_key = raw  # rendered once by response_add, stored nowhere

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        raw = getattr(request, "_new_raw_api_key", None)
        if raw is None:  # pragma: no cover - save_model always sets it on add
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "api_key": obj,
            "raw_key": raw,
        }
        response = TemplateResponse(request, "admin/trading/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


# --- exchange accounts ---------------------------------------------------------------------------------


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value: not the stored one, and not the submitted one when the form is
    shown again with errors."""

    def format_value(self, value):
        return None


class ExchangeAccountForm(forms.ModelForm):
    credentials = forms.CharField(
        required=False,
        strip=True,
        widget=WriteOnlyTextarea(attrs={"rows": 6, "cols": 60, "autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            'A JSON object, e.g. {"api_key": "…", "api_secret": "…"}. Write-only: stored encrypted and never '
            "shown again. Leave empty to keep the current credentials."
        ),
    )
    clear_credentials = forms.BooleanField(required=False, help_text="Remove the stored credentials.")

    class Meta:
        model = ExchangeAccount
        fields = ("client", "exchange", "username", "active", "max_outcome_stake", "balance")

    def clean_credentials(self) -> dict | None:
        raw = self.cleaned_data.get("credentials") or ""
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            # The message names the position, never the content.
            raise forms.ValidationError(f"Not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(value, dict) or not value:
            raise forms.ValidationError("Credentials must be a non-empty JSON object.")
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("credentials") and cleaned.get("clear_credentials"):
            raise forms.ValidationError("Either set new credentials or clear them, not both.")
        return cleaned

    def save(self, commit: bool = True) -> ExchangeAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("credentials"):
            account.set_credentials(self.cleaned_data["credentials"])
        elif self.cleaned_data.get("clear_credentials"):
            account.set_credentials(None)
        if commit:
            account.save()
        return account


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    form = ExchangeAccountForm
    list_display = (
        "username",
        "exchange",
        "client",
        "active",
        "max_outcome_stake",
        "balance",
        "credentials_set",
        "created_at",
    )
    list_select_related = ("client",)
    list_filter = ("exchange", "active", "client")
    search_fields = ("username", "client__name")
    autocomplete_fields = ("client",)
    fieldsets = (
        (None, {"fields": ("client", "exchange", "username", "active", "max_outcome_stake", "balance")}),
        ("Credentials (write-only)", {"fields": ("credentials_set", "credentials", "clear_credentials")}),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("credentials_set", "created_at", "updated_at")

    @admin.display(boolean=True, description="credentials set")
    def credentials_set(self, obj: ExchangeAccount) -> bool:
        return obj.has_credentials


# --- tournaments and fixtures ----------------------------------------------------------------------------


@admin.register(Tournament)
class TournamentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "tournament_id",
        "sport_name",
        "sizing_mode",
        "fixed_stake",
        "limit_fraction",
        "edge",
        "price_tick",
        "quote_in_play",
    )
    list_filter = ("sport_name", "sizing_mode", "quote_in_play")
    search_fields = ("name", "=tournament_id")
    readonly_fields = ("created_at", "updated_at")


@admin.register(Fixture)
class FixtureAdmin(FixtureSettlementAdminMixin, admin.ModelAdmin):
    list_display = (
        "fixture_id",
        "participant1_name",
        "participant2_name",
        "tournament",
        "start_time",
        "status",
        "score",
    )
    list_select_related = ("tournament",)
    list_filter = ("status", "sport_name", "tournament")
    search_fields = ("=fixture_id", "participant1_name", "participant2_name", "tournament__name")
    autocomplete_fields = ("tournament",)
    date_hierarchy = "start_time"
    readonly_fields = ("created_at", "updated_at")

    @admin.display(description="score")
    def score(self, obj: Fixture) -> str:
        if obj.participant1_score is None and obj.participant2_score is None:
            return "-"
        return f"{obj.participant1_score if obj.participant1_score is not None else '-'}-" + (
            f"{obj.participant2_score if obj.participant2_score is not None else '-'}"
        )


# --- orders, fills ------------------------------------------------------------------------------------------


class FillInline(ReadOnlyInline):
    model = Fill
    fields = ("venue_trade_id", "price", "stake", "source", "matched_at")
    readonly_fields = fields


class HedgeBetInline(ReadOnlyInline):
    model = HedgeBet
    fk_name = "order"
    fields = (
        "fill",
        "bookmaker",
        "bookmaker_bet_id",
        "placed_price",
        "placed_stake",
        "bet_status",
        "settlement_status",
        "placed_at",
    )
    readonly_fields = fields
    verbose_name_plural = "hedge bets"


class OrderOpenFilter(admin.SimpleListFilter):
    title = "open"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return (("yes", "open (pending placement or placed)"), ("no", "closed"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(order_status__in=OPEN_ORDER_STATUSES)
        if self.value() == "no":
            return queryset.exclude(order_status__in=OPEN_ORDER_STATUSES)
        return queryset


@admin.register(Order)
class OrderAdmin(ReadOnlyModelAdmin):
    """Orders are written by the engine only: viewable, cancellable (through the venue), never edited."""

    list_display = (
        "id",
        "client",
        "exchange",
        "account__username",
        "fixture__fixture_id",
        "outcome_id",
        "side",
        "order_cents",
        "order_stake",
        "matched_stake",
        "order_status",
        "matched_status",
        "settlement_status",
        "created_at",
    )
    list_select_related = ("client", "account", "fixture")
    list_filter = (OrderOpenFilter, "order_status", "matched_status", "settlement_status", "exchange", "back", "client")
    search_fields = (
        "=id",
        "=client_order_id",
        "=exchange_order_id",
        "=fixture__fixture_id",
        "client__name",
        "account__username",
    )
    date_hierarchy = "created_at"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "client",
                    "account",
                    "fixture",
                    "exchange",
                    "outcome_id",
                    "player_id",
                    "side",
                    "client_order_id",
                    "exchange_order_id",
                    "exchange_outcome_id",
                )
            },
        ),
        (
            "State",
            {
                "fields": (
                    "order_status",
                    "matched_status",
                    "order_cents",
                    "order_stake",
                    "matched_stake",
                    "status_reason",
                )
            },
        ),
        ("Settlement", {"fields": ("settlement_status", "settled_at")}),
        (
            "Bookmaker at order time",
            {"fields": ("bookmaker_outcome_price", "bookmaker_outcome_limit", "bookmaker_outcome_active")},
        ),
        ("Timestamps", {"fields": ("created_at", "matched_at", "updated_at")}),
    )
    readonly_fields = ("side",)
    inlines = (FillInline, HedgeBetInline)
    actions = ("cancel_orders",)

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.display(description="side", ordering="back")
    def side(self, obj: Order) -> str:
        return obj.side

    @admin.action(description="Cancel selected orders at their venues", permissions=["cancel"])
    def cancel_orders(self, request, queryset) -> None:
        actor = actor_of(request)
        cancelled, not_open, failed = [], [], []
        for order in queryset.select_related("client").order_by("pk"):
            try:
                result = order_cancel(client=order.client, order_id=order.pk, actor=actor)
            except OrderNotOpen:
                not_open.append(order.pk)
                continue
            except CancelFailed as exc:
                failed.append(f"{order.pk} ({exc.message})")
                continue
            cancelled.append(f"{result.pk} -> {result.order_status}")
        if cancelled:
            self.message_user(request, f"Cancel recorded for order(s): {', '.join(cancelled)}", messages.SUCCESS)
        if not_open:
            self.message_user(
                request, f"Not open, nothing to cancel: {', '.join(map(str, not_open))}", messages.WARNING
            )
        if failed:
            self.message_user(request, f"Venue did not confirm, left open: {'; '.join(failed)}", messages.ERROR)


@admin.register(Fill)
class FillAdmin(ReadOnlyModelAdmin):
    list_display = (
        "venue_trade_id",
        "order_link",
        "client",
        "exchange",
        "price",
        "stake",
        "source",
        "hedge_status",
        "matched_at",
    )
    list_select_related = ("order", "client", "hedge_bet")
    list_filter = ("exchange", "source", "hedge_bet__bet_status", "client")
    search_fields = ("=venue_trade_id", "=order__id", "=order__client_order_id", "client__name")
    date_hierarchy = "matched_at"
    fields = ("order_link", "client", "exchange", "venue_trade_id", "price", "stake", "source", "hedge_link")
    readonly_fields = ("order_link", "hedge_link")

    @admin.display(description="order", ordering="order_id")
    def order_link(self, obj: Fill) -> str:
        return _link(obj.order, obj.order_id)

    @admin.display(description="hedge bet")
    def hedge_status(self, obj: Fill) -> str:
        try:
            return obj.hedge_bet.bet_status
        except HedgeBet.DoesNotExist:
            return "none"

    @admin.display(description="hedge bet")
    def hedge_link(self, obj: Fill) -> str:
        try:
            bet = obj.hedge_bet
        except HedgeBet.DoesNotExist:
            return "none (naked)"
        return _link(bet, f"{bet.pk}: {bet.bet_status}, {bet.placed_stake} @ {bet.placed_price}")


# --- PnL rollup (derived data, written by trading.services.pnl; read-only here) ---------------------------


@admin.register(PnlDay)
class PnlDayAdmin(ReadOnlyModelAdmin):
    list_display = ("client", "day", "total_turnover", "net_realized_spread", "naked_pnl", "computed_at")
    list_select_related = ("client",)
    list_filter = ("client",)
    date_hierarchy = "day"


@admin.register(PnlDirtyDay)
class PnlDirtyDayAdmin(ReadOnlyModelAdmin):
    list_display = ("client", "day", "generation", "marked_at")
    list_select_related = ("client",)
    list_filter = ("client",)


# --- quoting (configuration: where and what the engine quotes; state: the live quote per key) ----------------


@admin.register(OutcomeMarket)
class OutcomeMarketAdmin(admin.ModelAdmin):
    list_display = ("fixture", "outcome_id", "player_id", "exchange", "exchange_outcome_id", "active")
    list_select_related = ("fixture",)
    list_filter = ("exchange", "active")
    search_fields = ("fixture__fixture_id", "=exchange_outcome_id")
    raw_id_fields = ("fixture",)
    readonly_fields = ("created_at", "updated_at")


@admin.register(QuotingRule)
class QuotingRuleAdmin(admin.ModelAdmin):
    list_display = ("account", "tournament", "fixture", "enabled")
    list_select_related = ("account", "tournament", "fixture")
    list_filter = ("enabled",)
    raw_id_fields = ("account", "tournament", "fixture")
    readonly_fields = ("created_at", "updated_at")


@admin.register(LiveQuote)
class LiveQuoteAdmin(ReadOnlyModelAdmin):
    list_display = (
        "client",
        "account",
        "fixture",
        "outcome_id",
        "player_id",
        "order",
        "seq",
        "last_action",
        "last_reason",
    )
    list_select_related = ("client", "account", "fixture", "order")
    list_filter = ("last_action", "client")


@admin.register(PlacementAttempt)
class PlacementAttemptAdmin(ReadOnlyModelAdmin):
    list_display = ("order", "sent", "last_error", "updated_at")
    list_select_related = ("order",)


# --- system controls ------------------------------------------------------------------------------------------


#: The buttons of the system state page: form value -> (service name, message).
SYSTEM_ACTIONS: dict[str, tuple[str, str]] = {
    ControlAction.SYSTEM_PAUSE: ("system_pause", "System paused: no new orders for any client; resting orders stay."),
    ControlAction.SYSTEM_STOP: ("system_stop", "System stopped: every client's open orders were cancelled."),
    ControlAction.SYSTEM_RESUME: ("system_resume", "System resumed: the system-wide pause/stop is lifted."),
    ControlAction.EMERGENCY_ON: ("emergency_on", "Emergency ON: all trading blocked, open orders cancelled."),
    ControlAction.EMERGENCY_OFF: ("emergency_off", "Emergency OFF."),
}


@admin.register(SystemTradingState)
class SystemTradingStateAdmin(ReadOnlyModelAdmin):
    """One row. The list goes straight to it; the page shows the switches and has one button per
    system action, each calling its service (the switches never move through the form)."""

    change_form_template = "admin/trading/systemtradingstate/change_form.html"
    fields = ("summary", "paused", "stopped", "emergency", "reason", "updated_at", "open_orders", "recent_events")
    readonly_fields = fields

    def has_control_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_object(self, request, object_id, from_field=None):
        return system_state() if str(object_id) == "1" else None

    def changelist_view(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("admin:trading_systemtradingstate_change", args=[1]))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/control/",
                self.admin_site.admin_view(self.control_view),
                name="trading_systemtradingstate_control",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {
            **(extra_context or {}),
            "system_actions": [(value, ControlAction(value).label) for value in SYSTEM_ACTIONS],
            "can_control": self.has_control_permission(request),
            "control_url": reverse("admin:trading_systemtradingstate_control", args=[1]),
        }
        return super().change_view(request, object_id, form_url, extra)

    def control_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_control_permission(request):
            raise PermissionDenied
        action = request.POST.get("action", "")
        if action not in SYSTEM_ACTIONS:
            self.message_user(request, f"Unknown action {action!r}.", messages.ERROR)
        else:
            service_name, done = SYSTEM_ACTIONS[action]
            reason = (request.POST.get("reason") or CONSOLE_REASON).strip()[:255]
            report = getattr(controls, service_name)(actor=actor_of(request), reason=reason)
            self.message_user(request, done, messages.SUCCESS)
            if report is not None:
                _report_failed_cancels(self, request, report.failed)
        return HttpResponseRedirect(reverse("admin:trading_systemtradingstate_change", args=[1]))

    @admin.display(description="status")
    def summary(self, obj: SystemTradingState) -> str:
        if obj.emergency:
            return TradingStatus.EMERGENCY.value
        if obj.stopped:
            return "system stopped"
        if obj.paused:
            return "system paused"
        return "live (no system-wide block)"

    @admin.display(description="open orders, all clients")
    def open_orders(self, obj: SystemTradingState) -> str:
        counts = Order.objects.open().aggregate(
            n=Count("id"),
            clients=Count("client", distinct=True),
            pending=Count("id", filter=Q(order_status="PENDING_PLACEMENT")),
        )
        return f"{counts['n']} ({counts['pending']} pending placement) across {counts['clients']} client(s)"

    @admin.display(description="recent system actions")
    def recent_events(self, obj: SystemTradingState) -> str:
        events = TradingControlEvent.objects.filter(client__isnull=True)[:10]
        if not events:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} · {} · {}{}</li>",
                (
                    (
                        e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        e.action,
                        e.actor,
                        f" · {e.reason}" if e.reason else "",
                    )
                    for e in events
                ),
            ),
        )


class ControlScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return (("system", "system-wide"), ("client", "one client"))

    def queryset(self, request, queryset):
        if self.value() == "system":
            return queryset.filter(client__isnull=True)
        if self.value() == "client":
            return queryset.filter(client__isnull=False)
        return queryset


@admin.register(TradingControlEvent)
class TradingControlEventAdmin(ReadOnlyModelAdmin):
    list_display = ("created_at", "action", "scope", "actor", "reason")
    list_select_related = ("client",)
    list_filter = (ControlScopeFilter, "action", "client")
    search_fields = ("actor", "reason", "client__name")
    date_hierarchy = "created_at"

    @admin.display(description="client", ordering="client__name")
    def scope(self, obj: TradingControlEvent) -> str:
        return obj.client.name if obj.client_id else "(system)"
