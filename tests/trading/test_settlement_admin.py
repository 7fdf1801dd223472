"""Console: the Fixture settlement actions go through the services and show the settlement state."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from hedging.choices import BetSettlementStatus
from tests.factories import AccountFactory, FixtureFactory
from tests.trading.test_settlement import filled, states
from trading.choices import FixtureStatus, SettlementStatus

pytestmark = pytest.mark.django_db

S, B = SettlementStatus, BetSettlementStatus
CHANGELIST = reverse("admin:trading_fixture_changelist")


@pytest.fixture
def live(mm_client):
    fx = FixtureFactory(status=FixtureStatus.LIVE, participant1_score=0, participant2_score=0)
    order = filled(AccountFactory(client=mm_client[0]), fx, 10170)  # over 2.25 bought
    return fx, order


def post_action(admin_client, action, fixtures, **data):
    body = {"action": action, ACTION_CHECKBOX_NAME: [f.pk for f in fixtures], **data}
    return admin_client.post(CHANGELIST, body, follow=True)


def test_set_result_shows_a_form_first_then_settles_through_the_services(admin_client, live):
    fx, order = live

    form_page = post_action(admin_client, "set_result_and_settle", [fx])
    assert form_page.status_code == 200 and b"participant1_score" in form_page.content
    assert states(order) == (S.UNDECIDED, [B.UNDECIDED])

    done = post_action(
        admin_client,
        "set_result_and_settle",
        [fx],
        participant1_score=1,
        participant2_score=1,
        status="finished",
        apply=1,
    )

    assert done.status_code == 200 and b"1 order(s) and 1 bet(s) settled" in done.content
    fx.refresh_from_db()
    assert (fx.status, fx.participant1_score, fx.participant2_score) == ("finished", 1, 1)
    assert states(order) == (S.HALF_LOST, [B.HALF_WON])
    assert LogEntry.objects.get().change_message == "result set: finished 1-1"


def test_a_finished_result_without_scores_is_refused_by_the_form_and_nothing_changes(admin_client, live):
    fx, order = live

    page = post_action(admin_client, "set_result_and_settle", [fx], participant1_score=2, status="finished", apply=1)

    assert b"A finished fixture needs both scores." in page.content
    fx.refresh_from_db()
    assert fx.status == "live" and states(order) == (S.UNDECIDED, [B.UNDECIDED])


def test_set_result_needs_exactly_one_fixture(admin_client, live):
    fx, _ = live
    page = post_action(admin_client, "set_result_and_settle", [fx, FixtureFactory()])
    assert b"Select exactly one fixture" in page.content


def test_void_needs_a_reason_then_voids_and_settles(admin_client, live):
    fx, order = live

    assert b"reason" in post_action(admin_client, "void_fixtures", [fx]).content
    page = post_action(admin_client, "void_fixtures", [fx], reason="abandoned: pitch flooded", apply=1)

    assert page.status_code == 200
    fx.refresh_from_db()
    assert fx.status == "cancelled" and states(order) == (S.VOID, [B.VOID])


def test_a_different_result_after_settlement_is_an_error_message_and_the_fields_are_read_only(admin_client, live):
    fx, order = live
    post_action(
        admin_client,
        "set_result_and_settle",
        [fx],
        participant1_score=3,
        participant2_score=0,
        status="finished",
        apply=1,
    )

    page = post_action(
        admin_client,
        "set_result_and_settle",
        [fx],
        participant1_score=0,
        participant2_score=3,
        status="finished",
        apply=1,
    )

    assert b"re-settlement is not supported" in page.content
    assert states(order) == (S.WON, [B.LOST])
    change = admin_client.get(reverse("admin:trading_fixture_change", args=[fx.pk]))
    assert change.status_code == 200
    assert b'name="participant1_score"' not in change.content  # read-only once settled
    assert b"orders: WON 1" in change.content and b"placed bets: lost 1" in change.content


def test_the_result_form_takes_goalscorers_to_settle_player_props(admin_client, mm_client):
    fx = FixtureFactory(status=FixtureStatus.LIVE)
    account = AccountFactory(client=mm_client[0])
    scorer = filled(account, fx, 1150, player_id=290927)
    nobody = FixtureFactory(status=FixtureStatus.LIVE)
    blank_sheet = filled(account, nobody, 1150, player_id=290927)

    bad = post_action(
        admin_client,
        "set_result_and_settle",
        [fx],
        participant1_score=1,
        participant2_score=0,
        status="finished",
        goalscorers="x,1",
        apply=1,
    )
    assert b"Player ids are whole numbers" in bad.content and states(scorer)[0] == S.UNDECIDED

    post_action(
        admin_client,
        "set_result_and_settle",
        [fx],
        participant1_score=1,
        participant2_score=0,
        status="finished",
        goalscorers="290927, 5",
        apply=1,
    )
    post_action(
        admin_client,
        "set_result_and_settle",
        [nobody],
        participant1_score=0,
        participant2_score=0,
        status="finished",
        goalscorers="none",
        apply=1,
    )

    assert states(scorer) == (S.WON, [B.LOST])
    assert states(blank_sheet) == (S.LOST, [B.WON])
