import datetime as dt

import pytest

from tests.factories import AccountFactory, FixtureFactory, OrderFactory, TournamentFactory
from trading.api.serializers import FixtureSchema, fixture_row
from trading.choices import FixtureStatus

pytestmark = pytest.mark.django_db


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def fixture_ids(resp) -> list[str]:
    return [row["fixtureId"] for row in resp.json()["data"]]


# --- GET /fixtures ------------------------------------------------------------------------------------------


def test_fixture_list_renders_every_field_with_scores(api):
    tournament = TournamentFactory(tournament_id=17, name="Premier League", sport_name="Soccer")
    fixture = FixtureFactory(
        fixture_id="id1000000861624412",
        tournament=tournament,
        participant1_name="Arsenal",
        participant2_name="Chelsea",
        start_time=at("2026-02-15T15:00:00"),
        status=FixtureStatus.LIVE,
        participant1_score=2,
        participant2_score=1,
        period_scores={"1H": [1, 0]},
    )

    resp = api.get("/api/v1/fixtures")

    assert resp.status_code == 200
    body = resp.json()
    assert (body["total"], body["page"], body["pageSize"], body["totalPages"]) == (1, 1, 50, 1)
    assert body["data"] == [
        {
            "fixtureId": "id1000000861624412",
            "tournamentId": 17,
            "tournamentName": "Premier League",
            "sportId": 10,
            "sportName": "Soccer",
            "participant1": "Arsenal",
            "participant2": "Chelsea",
            "startTime": "2026-02-15T15:00:00Z",
            "status": "live",
            "scores": {"participant1": 2, "participant2": 1, "periods": {"1H": [1, 0]}},
            "updatedAt": fixture.updated_at.isoformat().replace("+00:00", "Z"),
        }
    ]


def test_a_fixture_without_tournament_or_scores_renders_nulls(api):
    FixtureFactory(tournament=None, sport_name="Tennis")

    row = api.get("/api/v1/fixtures").json()["data"][0]

    assert row["tournamentId"] is None and row["tournamentName"] is None and row["sportName"] == "Tennis"
    assert row["scores"] == {"participant1": None, "participant2": None, "periods": {}}


def test_fixtures_are_shared_reference_data_visible_to_every_client(api, other_client):
    theirs = FixtureFactory()
    OrderFactory(account=AccountFactory(client=other_client[0]), fixture=theirs)  # only the other client traded it

    assert fixture_ids(api.get("/api/v1/fixtures")) == [theirs.fixture_id]
    assert api.get(f"/api/v1/fixtures/{theirs.fixture_id}").status_code == 200


def test_fixtures_are_listed_soonest_start_first(api):
    later = FixtureFactory(start_time=at("2026-02-16T12:00:00"))
    sooner = FixtureFactory(start_time=at("2026-02-15T12:00:00"))

    assert fixture_ids(api.get("/api/v1/fixtures")) == [sooner.fixture_id, later.fixture_id]


def test_fixtures_filter_by_comma_separated_status(api):
    live = FixtureFactory(status=FixtureStatus.LIVE, start_time=at("2026-02-15T10:00:00"))
    finished = FixtureFactory(status=FixtureStatus.FINISHED, start_time=at("2026-02-15T11:00:00"))
    FixtureFactory(status=FixtureStatus.NOT_STARTED)

    assert fixture_ids(api.get("/api/v1/fixtures?status=live")) == [live.fixture_id]
    assert fixture_ids(api.get("/api/v1/fixtures?status=live,finished")) == [live.fixture_id, finished.fixture_id]


def test_fixtures_filter_by_sport_and_tournament(api):
    tennis = FixtureFactory(sport_id=12, sport_name="Tennis")
    soccer = FixtureFactory(sport_id=10)

    assert fixture_ids(api.get("/api/v1/fixtures?sportId=12")) == [tennis.fixture_id]
    tid = soccer.tournament.tournament_id
    assert fixture_ids(api.get(f"/api/v1/fixtures?tournamentId={tid}")) == [soccer.fixture_id]


def test_fixture_dates_filter_the_start_time_by_whole_utc_days(api):
    FixtureFactory(start_time=at("2026-02-14T23:59:59"))
    first = FixtureFactory(start_time=at("2026-02-15T00:00:00"))
    last = FixtureFactory(start_time=at("2026-02-16T23:59:59.999999"))
    FixtureFactory(start_time=at("2026-02-17T00:00:00"))

    resp = api.get("/api/v1/fixtures?fromDate=2026-02-15&toDate=2026-02-16")

    assert fixture_ids(resp) == [first.fixture_id, last.fixture_id]


def test_fixture_pages_and_a_page_past_the_end(api):
    for i in range(3):
        FixtureFactory(start_time=at(f"2026-02-1{i}T10:00:00"))

    assert len(api.get("/api/v1/fixtures?pageSize=2&page=2").json()["data"]) == 1
    assert api.get("/api/v1/fixtures?pageSize=2&page=4").json() == {
        "data": [],
        "total": 3,
        "page": 4,
        "pageSize": 2,
        "totalPages": 2,
    }
    assert api.get("/api/v1/fixtures?pageSize=2000").status_code == 200


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("status=LIVE", "status"),
        ("status=live,over", "status"),
        ("sportId=soccer", "sportId"),
        ("sportId=1.5", "sportId"),
        ("sportId=-1", "sportId"),
        ("tournamentId=x", "tournamentId"),
        ("tournamentId=99999999999999999999", "tournamentId"),
        ("fromDate=2026-2-15x", "fromDate"),
        ("toDate=2026-02-15T10:00", "toDate"),
        ("fromDate=2026-02-16&toDate=2026-02-15", "fromDate"),
        ("page=x", "page"),
        ("pageSize=2001", "pageSize"),
        ("pageSize=0", "pageSize"),
    ],
)
def test_bad_fixture_query_parameters_are_400_naming_the_parameter(api, query, parameter):
    resp = api.get(f"/api/v1/fixtures?{query}")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_parameter" and resp.json()["parameter"] == parameter


def test_a_page_of_50_fixtures_costs_a_constant_number_of_queries(api, django_assert_max_num_queries):
    for _ in range(50):  # each with its own tournament: an N+1 would show
        FixtureFactory()

    with django_assert_max_num_queries(4):  # key lookup, last-used stamp, count, page
        resp = api.get("/api/v1/fixtures?pageSize=50")

    assert len(resp.json()["data"]) == 50


# --- GET /fixtures/{fixtureId} ------------------------------------------------------------------------------


def test_fixture_detail_by_string_id_is_the_same_object_as_in_the_list(api):
    fixture = FixtureFactory(fixture_id="id1000000861624412")

    resp = api.get("/api/v1/fixtures/id1000000861624412")

    assert resp.status_code == 200
    assert resp.json() == api.get("/api/v1/fixtures").json()["data"][0]
    assert resp.json()["fixtureId"] == fixture.fixture_id


def test_unknown_fixture_is_404(api):
    resp = api.get("/api/v1/fixtures/id999")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"


@pytest.mark.parametrize("raw", ["id%20123", "id$123", "x" * 65])
def test_malformed_fixture_ids_are_400_naming_fixture_id(api, raw):
    resp = api.get(f"/api/v1/fixtures/{raw}")
    assert resp.status_code == 400 and resp.json()["parameter"] == "fixtureId"


# --- schema documents exactly what is rendered --------------------------------------------------------------


def test_fixture_schema_fields_equal_the_rendered_keys():
    row = fixture_row(FixtureFactory())
    schema = FixtureSchema()

    assert set(schema.fields) == set(row)
    assert set(schema.fields["scores"].fields) == set(row["scores"])
