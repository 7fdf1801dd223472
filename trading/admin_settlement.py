"""Console actions on fixtures for settlement (mixed into ``FixtureAdmin`` in trading/admin.py).

* **Set result and settle** (one fixture): a small form (participant scores and a final status),
  then ``fixture_result_set`` and ``settle_fixture``, the same services the feed's path uses.
* **Void fixture** (one or more): a reason, then ``fixture_void`` and ``settle_fixture``.

Both record ``admin:<username>`` as the actor and an admin log entry. The settlement state of a
fixture (orders and bets per settlement status) is shown read-only on its page; once any order is
settled, status and scores are read-only too (a different result is refused: re-settlement is not
supported).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from hedging.choices import BetStatus
from hedging.models import HedgeBet
from trading.choices import FixtureStatus, SettlementStatus
from trading.models import Fixture, Order
from trading.services.settlement import (
    SettlementError,
    fixture_result_set,
    fixture_void,
    settle_fixture,
)

FINAL_CHOICES = [
    (FixtureStatus.FINISHED.value, "finished (settle by the score)"),
    (FixtureStatus.CANCELLED.value, "cancelled (void everything)"),
    (FixtureStatus.ABANDONED.value, "abandoned (void everything)"),
]


class FixtureResultForm(forms.Form):
    participant1_score = forms.IntegerField(min_value=0, required=False)
    participant2_score = forms.IntegerField(min_value=0, required=False)
    status = forms.ChoiceField(choices=FINAL_CHOICES, initial=FixtureStatus.FINISHED.value)
    goalscorers = forms.CharField(
        required=False,
        max_length=500,
        help_text="Player ids who scored, comma-separated, to settle anytime-goalscorer orders; 'none' if "
        "nobody scored. Blank: not known, goalscorer orders stay undecided.",
    )

    def clean_goalscorers(self) -> frozenset[int] | None:
        raw = self.cleaned_data.get("goalscorers", "").strip()
        if not raw:
            return None
        if raw.lower() == "none":
            return frozenset()
        try:
            ids = frozenset(int(part) for part in raw.replace(" ", "").split(",") if part)
        except ValueError:
            raise forms.ValidationError("Player ids are whole numbers separated by commas.") from None
        if not ids or min(ids) <= 0:
            raise forms.ValidationError("Player ids are positive whole numbers.")
        return ids

    def clean(self):
        data = super().clean()
        if data.get("status") == FixtureStatus.FINISHED and (
            data.get("participant1_score") is None or data.get("participant2_score") is None
        ):
            raise forms.ValidationError("A finished fixture needs both scores.")
        return data


class FixtureVoidForm(forms.Form):
    reason = forms.CharField(max_length=255, help_text="Why every order and bet on it is void (logged with your name).")


def _actor(request) -> str:
    return f"admin:{request.user.username}"


class FixtureSettlementAdminMixin:
    """Adds the settlement actions and the read-only settlement state to a Fixture ModelAdmin."""

    actions = ["set_result_and_settle", "void_fixtures"]
    settlement_fields = ("status", "participant1_score", "participant2_score")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if "settlement_state" not in fields:
            fields.append("settlement_state")
        settled = Order.objects.filter(fixture=obj).exclude(settlement_status=SettlementStatus.UNDECIDED)
        if obj is not None and settled.exists():
            fields += [f for f in self.settlement_fields if f not in fields]
        return fields

    @admin.display(description="settlement")
    def settlement_state(self, obj: Fixture) -> str:
        if obj.pk is None:
            return "-"
        orders = Order.objects.filter(fixture=obj).values("settlement_status").annotate(n=Count("id"))
        bets = (
            HedgeBet.objects.filter(order__fixture=obj, bet_status=BetStatus.PLACED)
            .values("settlement_status")
            .annotate(n=Count("id"))
        )
        rows = [("orders", {r["settlement_status"]: r["n"] for r in orders})]
        rows.append(("placed bets", {r["settlement_status"]: r["n"] for r in bets}))
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{}: {}</li>",
                ((name, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none") for name, counts in rows),
            ),
        )

    def _render(self, request, queryset, form, *, action: str, title: str, intro: str):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "form": form,
            "fixtures": queryset,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/trading/fixture/settlement_action.html", context)

    def _settle(self, request, fixture: Fixture, message: str, scorers: frozenset[int] | None = None) -> None:
        summary = settle_fixture(fixture_id=fixture.pk, actor=_actor(request), wait_for_grace=False, scorers=scorers)
        self.log_change(request, fixture, message)
        level = messages.WARNING if summary.unsettled or summary.still_open else messages.SUCCESS
        self.message_user(request, str(summary), level)

    @admin.action(description="Set result and settle (one fixture)", permissions=["change"])
    def set_result_and_settle(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one fixture to set its result.", messages.ERROR)
            return None
        fixture = queryset.get()
        form = FixtureResultForm(request.POST if "apply" in request.POST else None)
        if "apply" not in request.POST or not form.is_valid():
            return self._render(
                request,
                queryset,
                form,
                action="set_result_and_settle",
                title=f"Set the result of {fixture}",
                intro="The fixture gets this result, then every order and placed hedge bet on it is settled.",
            )
        data = form.cleaned_data
        try:
            fixture = fixture_result_set(
                fixture=fixture,
                participant1_score=data["participant1_score"],
                participant2_score=data["participant2_score"],
                status=data["status"],
                actor=_actor(request),
            )
        except SettlementError as exc:
            self.message_user(request, f"{fixture.fixture_id}: {exc.message}", messages.ERROR)
            return None
        score = f"{fixture.participant1_score}-{fixture.participant2_score}"
        scorers = data["goalscorers"]
        if scorers is not None:
            message = f"result set: {fixture.status} {score}, goalscorers {sorted(scorers) or 'none'}"
        else:
            message = f"result set: {fixture.status} {score}"
        self._settle(request, fixture, message, scorers)
        return None

    @admin.action(description="Void fixture (every order and bet VOID)", permissions=["change"])
    def void_fixtures(self, request, queryset):
        form = FixtureVoidForm(request.POST if "apply" in request.POST else None)
        if "apply" not in request.POST or not form.is_valid():
            return self._render(
                request,
                queryset,
                form,
                action="void_fixtures",
                title="Void fixtures",
                intro="Each fixture is set to cancelled and every order and placed hedge bet on it settles VOID.",
            )
        reason = form.cleaned_data["reason"]
        for fixture in queryset.order_by("pk"):
            try:
                fixture = fixture_void(fixture=fixture, actor=_actor(request), reason=reason)
            except SettlementError as exc:
                self.message_user(request, f"{fixture.fixture_id}: {exc.message}", messages.ERROR)
                continue
            self._settle(request, fixture, f"voided: {reason}")
        return None
