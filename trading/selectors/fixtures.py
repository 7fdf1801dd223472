"""Read queries over fixtures.

Fixtures are reference data shared by every client, like the odds feed they come from: any
client may list and read any fixture. What a client *did* on a fixture (orders, bets, positions)
stays scoped to that client in the other selectors. The ``client`` argument is kept so every
selector has the same shape and a future per-client restriction has one place to go.
"""

from __future__ import annotations

from django.db.models import QuerySet

from trading.models import Client, Fixture


def fixtures_for_client(*, client: Client) -> QuerySet[Fixture]:  # client unused: shared data
    """Every fixture, soonest start first, with its tournament joined in."""
    return Fixture.objects.select_related("tournament").order_by("start_time", "id")


def fixture_for_client(*, client: Client, fixture_id: str) -> Fixture | None:
    """The fixture with feed id ``fixture_id``, or None."""
    return fixtures_for_client(client=client).filter(fixture_id=fixture_id).first()
