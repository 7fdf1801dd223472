"""The brokerage console (Django admin), scoped per broker (``brokers.console.BrokerScopedAdmin``).

Every action goes through a service: deposit to a client, lock and unlock a withdrawal, create
(raw key shown once) and revoke API keys, create a broker. Rows of money and state (transfers,
withdrawals, their events) are never edited here.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from brokers.amounts import AmountError, parse_amount
from brokers.choices import ALL_SCOPES
from brokers.console import BrokerScopedAdmin, BrokerScopedInline, staff_broker
from brokers.errors import BrokerError
from brokers.models import Broker, BrokerApiKey, BrokerClient, BrokerStaff, Transfer, Withdrawal, WithdrawalEvent
from brokers.services import brokers as broker_services
from brokers.services import clients as client_services
from brokers.services import withdrawals as withdrawal_services

from . import admin_webhooks  # noqa: F401


def _actor(request) -> str:
    return f"console:{request.user.get_username()}"


# --- brokers -----------------------------------------------------------------------------------------------


class BrokerAddForm(forms.ModelForm):
    class Meta:
        model = Broker
        fields = ("name", "parent", "tenant_code", "wallet_address", "logout_redirect_url")


@admin.register(Broker)
class BrokerAdmin(BrokerScopedAdmin):
    broker_path = ""
    list_display = ("name", "short", "parent", "tenant_code", "wallet_address", "balance", "created_at")
    search_fields = ("name", "short", "tenant_code")
    list_filter = ("parent",)
    readonly_fields = ("id", "short", "path", "brand_root", "account", "user", "upgraded_from", "created_at")
    fields = (
        "id",
        "name",
        "short",
        "parent",
        "brand_root",
        "path",
        "tenant_code",
        "wallet_address",
        "logout_redirect_url",
        "account",
        "user",
        "upgraded_from",
        "created_at",
    )

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("parent", "account").annotate(_balance=F("account__balance"))
        )

    @admin.display(description="DCT balance", ordering="_balance")
    def balance(self, obj):
        return obj._balance

    @admin.display(description="")
    def fund_link(self, obj):
        return format_html('<a class="button" href="{}">Fund</a>', reverse("admin:brokers_broker_fund", args=[obj.pk]))

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        return shown if staff_broker(request) is not None else [*shown, "fund_link"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = BrokerAddForm
            kwargs["fields"] = BrokerAddForm.Meta.fields
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return BrokerAddForm.Meta.fields if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (*self.readonly_fields, "name", "parent")

    def get_urls(self):
        return [
            path("<uuid:pk>/fund/", self.admin_site.admin_view(self.fund_view), name="brokers_broker_fund"),
            *super().get_urls(),
        ]

    def fund_view(self, request, pk):
        """Platform staff credit a broker with DCT from the outside world (a ``funding`` transfer)."""
        if staff_broker(request) is not None or not (
            request.user.is_superuser or request.user.has_perm("brokers.add_transfer")
        ):
            raise PermissionDenied
        broker = self.get_queryset(request).filter(pk=pk).first()
        if broker is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(pk))
        form = DepositForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            broker_services.broker_fund(
                broker=broker,
                amount=form.cleaned_data["amount"],
                idempotency_key=request.POST.get("idempotency_key") or f"console:{uuid.uuid4()}",
                actor=_actor(request),
                memo=form.cleaned_data["memo"],
            )
            self.message_user(request, f"Credited {form.cleaned_data['amount']} DCT to {broker}.")
            return HttpResponseRedirect(reverse("admin:brokers_broker_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Fund {broker} (platform credit)",
            "form": form,
            "idempotency_key": uuid.uuid4(),
        }
        return TemplateResponse(request, "admin/brokers/form.html", context)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            if change:
                broker_services.broker_update(
                    broker=obj,
                    tenant_code=data.get("tenant_code") or None,
                    wallet_address=data.get("wallet_address", ""),
                    logout_redirect_url=data.get("logout_redirect_url", ""),
                )
            else:
                created = broker_services.broker_create(
                    name=data["name"],
                    parent=data.get("parent"),
                    tenant_code=data.get("tenant_code") or None,
                    wallet_address=data.get("wallet_address", ""),
                    logout_redirect_url=data.get("logout_redirect_url", ""),
                )
                obj.pk = created.pk
                obj._state.adding = False
        except BrokerError as exc:
            raise PermissionDenied(exc.message) from exc


@admin.register(BrokerStaff)
class BrokerStaffAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    list_display = ("user", "broker", "created_at")
    autocomplete_fields = ("broker",)
    search_fields = ("user__username",)

    def save_model(self, request, obj, form, change):
        # through the service: the user also becomes is_staff, so they can sign in to the console
        staff = broker_services.broker_staff_add(broker=form.cleaned_data["broker"], user=form.cleaned_data["user"])
        obj.pk = staff.pk
        obj._state.adding = False


# --- API keys ----------------------------------------------------------------------------------------------


class ApiKeyCreateForm(forms.Form):
    broker = forms.ModelChoiceField(queryset=Broker.objects.none())
    name = forms.CharField(max_length=128, required=False)
    scopes = forms.MultipleChoiceField(choices=[(s, s) for s in ALL_SCOPES], widget=forms.CheckboxSelectMultiple)


@admin.register(BrokerApiKey)
class BrokerApiKeyAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    broker_staff_can_add = True
    list_display = ("prefix", "broker", "name", "scope_list", "created_at", "last_used_at", "revoked_at")
    list_filter = ("broker",)
    search_fields = ("prefix", "name")
    readonly_fields = ("broker", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)
    actions = ["revoke_keys"]

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # keys are created and revoked, never edited

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        brokers = BrokerAdmin(Broker, self.admin_site).get_queryset(request)
        form = ApiKeyCreateForm(request.POST or None)
        form.fields["broker"].queryset = brokers
        if request.method == "POST" and form.is_valid():
            key, raw = broker_services.broker_key_create(
                broker=form.cleaned_data["broker"], scopes=form.cleaned_data["scopes"], name=form.cleaned_data["name"]
            )
            response = TemplateResponse(
                request,
                "admin/brokers/brokerapikey/created.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": "API key created",
                    "api_key": key,
                    "raw_key": raw,
                },
            )
            response["Cache-Control"] = "no-store"
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Create a broker API key",
            "form": form,
        }
        return TemplateResponse(request, "admin/brokers/form.html", context)

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            broker_services.broker_key_revoke(api_key=key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if staff_broker(request) is None and not request.user.has_perm("brokers.change_brokerapikey"):
            actions.pop("revoke_keys", None)
        return actions


# --- clients -----------------------------------------------------------------------------------------------


class DepositForm(forms.Form):
    amount = forms.CharField(help_text="DCT, at most 8 decimal places")
    memo = forms.CharField(max_length=255, required=False)

    def clean_amount(self):
        try:
            return parse_amount(self.cleaned_data["amount"])
        except AmountError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(BrokerClient)
class BrokerClientAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    list_display = ("user_id", "broker", "username", "balance", "held", "created_at", "deposit_link")
    list_filter = ("broker",)
    search_fields = ("user_id", "trader__user__username", "email")
    readonly_fields = ("broker", "trader", "account", "user_id", "email", "wallet_address", "created_at")
    list_select_related = ("broker", "trader__user", "account")
    actions = ["upgrade_to_broker"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Upgrade selected clients to broker (parent: their service broker)")
    def upgrade_to_broker(self, request, queryset) -> None:
        if staff_broker(request) is None and not request.user.is_superuser:
            raise PermissionDenied
        done = 0
        for client in queryset:  # already scoped to the caller's subtree
            try:
                broker = broker_services.client_upgrade_to_broker(client=client)
            except BrokerError as exc:
                self.message_user(request, f"{client.user_id}: {exc.message}", messages.ERROR)
            else:
                done += 1
                self.message_user(request, f"{client.user_id} is now broker {broker} under {broker.parent}.")
        if done:
            self.message_user(request, f"Upgraded {done} client(s).", messages.SUCCESS)

    @admin.display(description="username")
    def username(self, obj):
        return obj.trader.user.get_username()

    @admin.display(description="balance", ordering="account__balance")
    def balance(self, obj):
        return obj.account.balance

    @admin.display(description="held", ordering="account__held")
    def held(self, obj):
        return obj.account.held

    @admin.display(description="")
    def deposit_link(self, obj):
        url = reverse("admin:brokers_brokerclient_deposit", args=[obj.pk])
        return format_html('<a class="button" href="{}">Deposit</a>', url)

    def get_urls(self):
        return [
            path(
                "<int:pk>/deposit/", self.admin_site.admin_view(self.deposit_view), name="brokers_brokerclient_deposit"
            ),
            *super().get_urls(),
        ]

    def _can_deposit(self, request, client) -> bool:
        broker = staff_broker(request)
        if broker is not None:
            return client.broker_id == broker.pk  # staff move their own broker's money only
        return request.user.is_superuser or request.user.has_perm("brokers.add_transfer")

    def deposit_view(self, request, pk: int):
        client = self.get_queryset(request).filter(pk=pk).first()
        if client is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(pk))
        if not self._can_deposit(request, client):
            raise PermissionDenied
        form = DepositForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                client_services.client_deposit(
                    broker=client.broker,
                    client=client,
                    amount=form.cleaned_data["amount"],
                    idempotency_key=request.POST.get("idempotency_key") or None,
                    actor=_actor(request),
                    memo=form.cleaned_data["memo"],
                )
            except BrokerError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Deposited {form.cleaned_data['amount']} to {client.user_id}.")
                return HttpResponseRedirect(reverse("admin:brokers_brokerclient_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Deposit to {client.user_id} (from {client.broker})",
            "form": form,
            "idempotency_key": uuid.uuid4(),
        }
        return TemplateResponse(request, "admin/brokers/form.html", context)


# --- transfers and withdrawals -------------------------------------------------------------------------------


@admin.register(Transfer)
class TransferAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    list_display = ("id", "kind", "broker", "client", "asset", "amount", "fee", "actor", "created_at")
    list_filter = ("kind", "broker")
    search_fields = ("client__user_id", "idempotency_key")
    list_select_related = ("broker", "client")

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class WithdrawalEventInline(BrokerScopedInline):
    model = WithdrawalEvent
    fields = ("created_at", "from_status", "to_status", "broker", "actor", "detail")
    readonly_fields = fields


@admin.register(Withdrawal)
class WithdrawalAdmin(BrokerScopedAdmin):
    broker_path = "broker"
    list_display = ("id", "client", "broker", "status", "amount", "net_amount", "locked_by", "cooling_ends_at")
    list_filter = ("status", "broker")
    search_fields = ("client__user_id", "wallet_address", "tx_hash")
    list_select_related = ("client", "broker", "locked_by")
    inlines = [WithdrawalEventInline]
    actions = ["lock", "unlock"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        if staff_broker(request) is None:  # locking is something a broker does, as itself
            actions.pop("lock", None)
            actions.pop("unlock", None)
        return actions

    def _each(self, request, queryset, fn, verb: str) -> None:
        broker = staff_broker(request)
        done = 0
        for w in queryset:
            try:
                fn(broker=broker, withdrawal_id=w.pk, actor=_actor(request))
                done += 1
            except BrokerError as exc:
                self.message_user(request, f"{w.pk}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} withdrawal(s) as {broker}.", messages.SUCCESS)

    @admin.action(description="Lock selected withdrawals (OTC, as your broker)")
    def lock(self, request, queryset) -> None:
        self._each(request, queryset, withdrawal_services.withdrawal_lock, "Locked")

    @admin.action(description="Unlock selected withdrawals (your locks only)")
    def unlock(self, request, queryset) -> None:
        self._each(request, queryset, withdrawal_services.withdrawal_unlock, "Unlocked")
