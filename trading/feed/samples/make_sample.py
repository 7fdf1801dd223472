"""Generate ``sample_replay.jsonl``: a deterministic, made-up odds feed for demos and tests.

    .venv/bin/python -m trading.feed.samples.make_sample [--out PATH]

Five fixtures in two sports, two bookmakers (``vertex``, ``pinnacle``), about two and a half
minutes of feed at 1x speed:

* soccer (sportId 10): three matches with 1X2, both teams to score, over/under 2.5 and the
  quarter lines 2.25 and 2.75, Asian handicap -0.25 and -0.5, correct score, and an anytime
  goalscorer market with two players; goals with score updates and a suspension of every market
  after each goal, a suspension without a goal (a VAR check), half-time and full-time results;
* basketball (sportId 11): two games with moneyline, total and spread, quarter scores and final
  results.

Prices come from a model, not from noise: soccer goals are Poisson with rates that decay with the
clock and react to the score (so 1X2, totals, handicaps and correct score stay consistent), and
basketball margins and totals are normal around the running score. Bookmakers add their margin and
round down to 0.01; prices are capped to [1.001, 1001] like real books, so late in a match some
correct-score prices sit at 1001 (outside the engine's sane bounds). Decided outcomes go inactive.

Market ids: 101 (1X2: 101/102/103), 104 (BTTS: 104/105) and 1010 (O/U 2.5: 1010/1011) are
OddsPapi's; the others follow the same pattern (a market's id is its first outcome's id) and are
illustrative. The catalog is written into the file header.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from trading.feed.replay import ReplayHeader, ReplayWriter

BASE_TIME_MS = 1_772_366_400_000  # 2026-03-01T12:00:00Z, the wall-clock time of t = 0
SEED = 20260301
OUT = Path(__file__).with_name("sample_replay.jsonl")

SOCCER, BASKETBALL = 10, 11
MARGINS = {"vertex": 0.05, "pinnacle": 0.03}
CS_SCORES = [(h, a) for h in range(3) for a in range(3)] + [(3, 0)]  # 0:0 .. 2:2, and a long shot

SOCCER_MARKETS = [
    {
        "marketId": 101,
        "marketName": "Full Time Result",
        "marketType": "1x2",
        "handicap": 0,
        "outcomes": [
            {"outcomeId": 101, "outcomeName": "1"},
            {"outcomeId": 102, "outcomeName": "X"},
            {"outcomeId": 103, "outcomeName": "2"},
        ],
    },
    {
        "marketId": 104,
        "marketName": "Both Teams To Score",
        "marketType": "btts",
        "handicap": 0,
        "outcomes": [{"outcomeId": 104, "outcomeName": "Yes"}, {"outcomeId": 105, "outcomeName": "No"}],
    },
    {
        "marketId": 1010,
        "marketName": "Over Under Full Time",
        "marketType": "totals",
        "handicap": 2.5,
        "outcomes": [{"outcomeId": 1010, "outcomeName": "Over"}, {"outcomeId": 1011, "outcomeName": "Under"}],
    },
    {
        "marketId": 10170,
        "marketName": "Over Under Full Time",
        "marketType": "totals",
        "handicap": 2.25,
        "outcomes": [{"outcomeId": 10170, "outcomeName": "Over"}, {"outcomeId": 10171, "outcomeName": "Under"}],
    },
    {
        "marketId": 10172,
        "marketName": "Over Under Full Time",
        "marketType": "totals",
        "handicap": 2.75,
        "outcomes": [{"outcomeId": 10172, "outcomeName": "Over"}, {"outcomeId": 10173, "outcomeName": "Under"}],
    },
    {
        "marketId": 1070,
        "marketName": "Asian Handicap",
        "marketType": "spreads",
        "handicap": -0.25,
        "outcomes": [{"outcomeId": 1070, "outcomeName": "1"}, {"outcomeId": 1071, "outcomeName": "2"}],
    },
    {
        "marketId": 1072,
        "marketName": "Asian Handicap",
        "marketType": "spreads",
        "handicap": -0.5,
        "outcomes": [{"outcomeId": 1072, "outcomeName": "1"}, {"outcomeId": 1073, "outcomeName": "2"}],
    },
    {
        "marketId": 1100,
        "marketName": "Correct Score",
        "marketType": "correctscore",
        "handicap": 0,
        "outcomes": [{"outcomeId": 1100 + i, "outcomeName": f"{h}:{a}"} for i, (h, a) in enumerate(CS_SCORES)],
    },
    {
        "marketId": 1150,
        "marketName": "Anytime Goalscorer",
        "marketType": "player-goalscorer",
        "handicap": 0,
        "playerProp": True,
        "outcomes": [{"outcomeId": 1150, "outcomeName": "Yes"}],
    },
]
BASKETBALL_MARKETS = [
    {
        "marketId": 111,
        "marketName": "Moneyline",
        "marketType": "moneyline",
        "handicap": 0,
        "outcomes": [{"outcomeId": 111, "outcomeName": "1"}, {"outcomeId": 112, "outcomeName": "2"}],
    },
    {
        "marketId": 121,
        "marketName": "Total Points",
        "marketType": "totals",
        "handicap": 215.5,
        "outcomes": [{"outcomeId": 121, "outcomeName": "Over"}, {"outcomeId": 122, "outcomeName": "Under"}],
    },
    {
        "marketId": 131,
        "marketName": "Point Spread",
        "marketType": "spreads",
        "handicap": -4.5,
        "outcomes": [{"outcomeId": 131, "outcomeName": "1"}, {"outcomeId": 132, "outcomeName": "2"}],
    },
]
for _m in SOCCER_MARKETS:
    _m["sportId"] = SOCCER
for _m in BASKETBALL_MARKETS:
    _m["sportId"] = BASKETBALL


@dataclass
class Fixture:
    fixture_id: str
    sport_id: int
    tournament: tuple[int, str, str]
    home: tuple[int, str]
    away: tuple[int, str]
    kickoff_s: float  # replay seconds
    # soccer: goal rates and scripted events; basketball: pre-game spread/total
    lam_home: float = 0.0
    lam_away: float = 0.0
    goals: list[tuple[int, str]] = field(default_factory=list)  # (minute, "home"/"away")
    var_check_minute: int | None = None
    scorers: list[tuple[int, str, float]] = field(default_factory=list)  # (playerId, side, share)
    spread: float = 0.0
    total: float = 0.0


FIXTURES = [
    Fixture(
        "id1000000861624412",
        SOCCER,
        (17, "Premier League", "England"),
        (4001, "Arsenal"),
        (4002, "Chelsea"),
        20.0,
        lam_home=1.55,
        lam_away=1.05,
        goals=[(23, "home"), (51, "away"), (78, "home")],
        scorers=[(290927, "home", 0.34), (291144, "away", 0.30)],
    ),
    Fixture(
        "id1000000861624501",
        SOCCER,
        (17, "Premier League", "England"),
        (4003, "Liverpool"),
        (4004, "Everton"),
        24.0,
        lam_home=1.85,
        lam_away=0.80,
        var_check_minute=64,
    ),
    Fixture(
        "id1000000861624587",
        SOCCER,
        (8, "LaLiga", "Spain"),
        (5001, "Real Madrid"),
        (5002, "Sevilla"),
        28.0,
        lam_home=1.70,
        lam_away=0.95,
        goals=[(38, "away"), (70, "home")],
    ),
    Fixture(
        "id1100000861700021",
        BASKETBALL,
        (132, "NBA", "USA"),
        (7001, "Boston Celtics"),
        (7002, "Miami Heat"),
        22.0,
        spread=-6.0,
        total=214.0,
    ),
    Fixture(
        "id1100000861700045",
        BASKETBALL,
        (132, "NBA", "USA"),
        (7003, "Denver Nuggets"),
        (7004, "Phoenix Suns"),
        26.0,
        spread=-2.5,
        total=226.0,
    ),
]

SOCCER_MINUTE_S = 1.0  # one match minute per replay second
HALF_TIME_S = 4.0
BASKET_MINUTE_S = 1.5
PRICE_EVERY_MINUTES = 5  # recompute prices every 5 minutes of play


class Feed:
    """Collects (t_ms, channel, payload) and the last price sent per oddsId."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, str, dict]] = []
        self.sent: dict[str, tuple[float, bool, bool]] = {}
        self.n = 0

    def add(self, t_s: float, channel: str, payload: dict) -> None:
        self.n += 1
        self.events.append((round(t_s * 1000), self.n, channel, payload))


# --- probability models --------------------------------------------------------------------------


def poisson(lam: float, kmax: int = 12) -> list[float]:
    probs = [math.exp(-lam)]
    for k in range(1, kmax + 1):
        probs.append(probs[-1] * lam / k)
    return probs


def soccer_outcomes(fx: Fixture, minute: int, score: tuple[int, int], goals_by: dict[int, int]) -> dict[int, float]:
    """outcomeId (or -playerId for the scorer market) -> probability, from the final-score grid."""
    rem = max(0.0, (90 - minute) / 90)
    # a team that trails attacks a little more
    diff = score[0] - score[1]
    lam_h = fx.lam_home * rem * (1.15 if diff < 0 else 0.95 if diff > 0 else 1.0)
    lam_a = fx.lam_away * rem * (1.15 if diff > 0 else 0.95 if diff < 0 else 1.0)
    ph, pa = poisson(lam_h), poisson(lam_a)
    grid = {(score[0] + i, score[1] + j): ph[i] * pa[j] for i in range(len(ph)) for j in range(len(pa))}
    p = {k: 0.0 for k in (101, 102, 103, 104, "t2", "t3", "t4+", "t<=1", "d+", "d0", "d-")}
    cs = [0.0] * len(CS_SCORES)
    for (h, a), pr in grid.items():
        p[101 if h > a else 102 if h == a else 103] += pr
        if h > 0 and a > 0:
            p[104] += pr
        t = h + a
        p["t<=1" if t <= 1 else "t2" if t == 2 else "t3" if t == 3 else "t4+"] += pr
        p["d+" if h > a else "d0" if h == a else "d-"] += pr
        if (h, a) in CS_SCORES:
            cs[CS_SCORES.index((h, a))] += pr
    out: dict[int, float] = {101: p[101], 102: p[102], 103: p[103], 104: p[104], 105: 1 - p[104]}
    over25 = p["t3"] + p["t4+"]
    out[1010], out[1011] = over25, 1 - over25
    # Asian lines as "probability" = 1/fair odds, from the EV-zero condition of each line.
    out[10170] = _asian(win=over25, half_lose=p["t2"], lose=p["t<=1"])
    out[10171] = _asian(win=p["t<=1"], half_win=p["t2"], lose=over25)
    out[10172] = _asian(win=p["t4+"], half_win=p["t3"], lose=p["t2"] + p["t<=1"])
    out[10173] = _asian(win=p["t2"] + p["t<=1"], half_lose=p["t3"], lose=p["t4+"])
    out[1070] = _asian(win=p["d+"], half_lose=p["d0"], lose=p["d-"])
    out[1071] = _asian(win=p["d-"], half_win=p["d0"], lose=p["d+"])
    out[1072], out[1073] = p["d+"], p["d0"] + p["d-"]
    for i, pr in enumerate(cs):
        out[1100 + i] = pr
    for player_id, side, share in fx.scorers:
        lam = (lam_h if side == "home" else lam_a) * share
        out[-player_id] = 1.0 if goals_by.get(player_id) else 1 - math.exp(-lam)
    return out


def _asian(win: float, lose: float, half_win: float = 0.0, half_lose: float = 0.0) -> float:
    """1/fair odds of an Asian line: EV = win*(o-1) + half_win*(o-1)/2 - half_lose/2 - lose = 0."""
    gain = win + half_win / 2
    loss = lose + half_lose / 2
    if gain <= 0:
        return 0.0
    if loss <= 0:
        return 1.0
    return 1 / (1 + loss / gain)


def norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def basketball_outcomes(fx: Fixture, minute: float, score: tuple[int, int]) -> dict[int, float]:
    rem = max(0.0, (48 - minute) / 48)
    margin_mean = (score[0] - score[1]) + (-fx.spread) * rem
    total_mean = score[0] + score[1] + fx.total * rem
    sd_m = max(0.5, 12.0 * math.sqrt(rem))
    sd_t = max(0.5, 16.0 * math.sqrt(rem))
    p_home = 1 - norm_cdf(-margin_mean / sd_m)
    p_over = 1 - norm_cdf((215.5 - total_mean) / sd_t)
    p_cover = 1 - norm_cdf((4.5 - margin_mean) / sd_m)
    return {111: p_home, 112: 1 - p_home, 121: p_over, 122: 1 - p_over, 131: p_cover, 132: 1 - p_cover}


# --- odds frames ---------------------------------------------------------------------------------


def to_price(prob: float, margin: float, rng: random.Random) -> tuple[float, bool]:
    """Bookmaker decimal odds for ``prob`` (rounded down to 0.01, capped to [1.001, 1001]) and
    whether the outcome is still open."""
    if prob <= 1e-9 or prob >= 1 - 1e-9:
        return (1001.0 if prob <= 1e-9 else 1.001), False
    implied = min(0.9995, prob * (1 + margin) * (1 + rng.uniform(-0.008, 0.008)))
    odds = 1 / implied
    if odds >= 1001:
        return 1001.0, True
    return max(1.001, math.floor(odds * 100) / 100), True


def market_of(outcome_id: int, markets: list[dict]) -> dict:
    for m in markets:
        if any(o["outcomeId"] == outcome_id for o in m["outcomes"]):
            return m
    raise KeyError(outcome_id)


def emit_odds(
    feed: Feed,
    t_s: float,
    fx: Fixture,
    probs: dict[int, float],
    rng: random.Random,
    *,
    suspended: bool = False,
    closed: bool = False,
) -> None:
    markets = SOCCER_MARKETS if fx.sport_id == SOCCER else BASKETBALL_MARKETS
    changed_at = BASE_TIME_MS + round(t_s * 1000)
    for bookmaker, margin in MARGINS.items():
        by_market: dict[int, dict[str, dict]] = {}
        for key, prob in probs.items():
            if key < 0:
                outcome_id, player_id = 1150, -key
            else:
                outcome_id, player_id = key, 0
            market = market_of(outcome_id, markets)
            if bookmaker == "pinnacle" and market["marketId"] in (1100, 1150):
                continue  # only vertex prices correct score and player props
            price, open_ = to_price(prob, margin, rng)
            active = open_ and not suspended and not closed
            odds_id = f"{fx.fixture_id}:{bookmaker}:{outcome_id}:{player_id}"
            state = (price, active, not (suspended or closed))
            if feed.sent.get(odds_id) == state:
                continue
            feed.sent[odds_id] = state
            base_limit = {"vertex": 5000, "pinnacle": 3000}[bookmaker]
            if market["marketId"] in (1100, 1150):
                base_limit = 500
            elif market["marketId"] != 101 and market["marketId"] != 111:
                base_limit //= 2
            by_market.setdefault(market["marketId"], {})[odds_id] = {
                "bookmaker": bookmaker,
                "marketId": market["marketId"],
                "outcomeId": outcome_id,
                "playerId": player_id,
                "price": price,
                "limit": float(base_limit + rng.randrange(0, 5) * 50),
                "active": active,
                "marketActive": not (suspended or closed),
                "mainLine": market["marketId"] in (101, 104, 1010, 1072, 111, 121, 131),
                "changedAt": changed_at,
            }
        for entries in by_market.values():
            feed.add(t_s, "odds", {"fixtureId": fx.fixture_id, "odds": {bookmaker: entries}})


def fixture_payload(fx: Fixture, status_id: int, status_name: str, live: bool, t_s: float) -> dict:
    sport_name = "Soccer" if fx.sport_id == SOCCER else "Basketball"
    iso = None
    if status_id >= 1:
        ms = BASE_TIME_MS + round(fx.kickoff_s * 1000)
        iso = _iso(ms)
    return {
        "fixtureId": fx.fixture_id,
        "status": {"live": live, "statusId": status_id, "statusName": status_name},
        "sport": {"sportId": fx.sport_id, "sportName": sport_name},
        "tournament": {
            "tournamentId": fx.tournament[0],
            "tournamentName": fx.tournament[1],
            "categoryName": fx.tournament[2],
        },
        "startTime": (BASE_TIME_MS + round(fx.kickoff_s * 1000)) // 1000,
        "trueStartTime": iso,
        "trueEndTime": _iso(BASE_TIME_MS + round(t_s * 1000)) if status_id == 2 else None,
        "participants": {
            "participant1Id": fx.home[0],
            "participant1Name": fx.home[1],
            "participant2Id": fx.away[0],
            "participant2Name": fx.away[1],
        },
    }


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def score_payload(fx: Fixture, periods: dict[str, tuple[int, int]], t_s: float) -> dict:
    at = _iso(BASE_TIME_MS + round(t_s * 1000))
    return {
        "fixtureId": fx.fixture_id,
        "scores": {
            name: {"period": name, "participant1Score": h, "participant2Score": a, "updatedAt": at}
            for name, (h, a) in periods.items()
        },
    }


# --- scripts -------------------------------------------------------------------------------------


def play_soccer(feed: Feed, fx: Fixture, rng: random.Random) -> None:
    feed.add(0.5, "fixtures", fixture_payload(fx, 0, "Not started", False, 0.5))
    score = (0, 0)
    goals_by: dict[int, int] = {}
    # pre-match: full board, then a little drift as money comes in
    for step, t in enumerate((1.0, 6.0, 11.0, 16.0)):
        fx.lam_home *= 1 + rng.uniform(-0.03, 0.03) if step else 1
        emit_odds(feed, t, fx, soccer_outcomes(fx, 0, score, goals_by), rng)
    feed.add(fx.kickoff_s, "fixtures", fixture_payload(fx, 1, "1st half", True, fx.kickoff_s))
    feed.add(fx.kickoff_s, "scores", score_payload(fx, {"result": score, "1stHalf": score}, fx.kickoff_s))
    goals = dict(fx.goals)
    first_half = (0, 0)
    for minute in range(1, 91):
        t = fx.kickoff_s + minute * SOCCER_MINUTE_S + (HALF_TIME_S if minute > 45 else 0)
        if minute in goals:
            side = goals[minute]
            score = (score[0] + 1, score[1]) if side == "home" else (score[0], score[1] + 1)
            for player_id, pside, _ in fx.scorers:
                if pside == side and player_id not in goals_by:
                    goals_by[player_id] = 1
                    break
            probs = soccer_outcomes(fx, minute, score, goals_by)
            emit_odds(feed, t, fx, probs, rng, suspended=True)  # the book suspends on the goal
            periods = {"result": score}
            if minute <= 45:
                periods["1stHalf"] = score
            else:
                periods["2ndHalf"] = (score[0] - first_half[0], score[1] - first_half[1])
            feed.add(t + 0.2, "scores", score_payload(fx, periods, t + 0.2))
            emit_odds(feed, t + 2.5, fx, soccer_outcomes(fx, minute + 2, score, goals_by), rng)
        elif minute == fx.var_check_minute:
            probs = soccer_outcomes(fx, minute, score, goals_by)
            emit_odds(feed, t, fx, probs, rng, suspended=True)  # VAR check: suspended, no goal
            emit_odds(feed, t + 3.0, fx, soccer_outcomes(fx, minute + 3, score, goals_by), rng)
        elif minute % PRICE_EVERY_MINUTES == 0:
            emit_odds(feed, t, fx, soccer_outcomes(fx, minute, score, goals_by), rng)
        if minute == 45:
            first_half = score
            feed.add(t + 0.5, "fixtures", fixture_payload(fx, 1, "Halftime", True, t + 0.5))
            feed.add(t + 0.5, "scores", score_payload(fx, {"result": score, "1stHalf": score}, t + 0.5))
        if minute == 46:
            feed.add(t - 0.5, "fixtures", fixture_payload(fx, 1, "2nd half", True, t - 0.5))
    t_end = fx.kickoff_s + 91 * SOCCER_MINUTE_S + HALF_TIME_S
    second = (score[0] - first_half[0], score[1] - first_half[1])
    feed.add(t_end, "scores", score_payload(fx, {"result": score, "1stHalf": first_half, "2ndHalf": second}, t_end))
    feed.add(t_end + 0.1, "fixtures", fixture_payload(fx, 2, "Finished", False, t_end + 0.1))
    final = soccer_outcomes(fx, 90, score, goals_by)
    emit_odds(feed, t_end + 0.2, fx, final, rng, closed=True)


def play_basketball(feed: Feed, fx: Fixture, rng: random.Random) -> None:
    feed.add(0.5, "fixtures", fixture_payload(fx, 0, "Not started", False, 0.5))
    score = (0, 0)
    for t in (1.0, 8.0, 15.0):
        emit_odds(feed, t, fx, basketball_outcomes(fx, 0, score), rng)
    feed.add(fx.kickoff_s, "fixtures", fixture_payload(fx, 1, "Q1", True, fx.kickoff_s))
    quarters: list[tuple[int, int]] = []
    q_start = (0, 0)
    home_rate = (fx.total - fx.spread) / 2 / 48
    away_rate = (fx.total + fx.spread) / 2 / 48
    for minute in range(1, 49):
        t = fx.kickoff_s + minute * BASKET_MINUTE_S + (minute > 24) * 3.0
        score = (score[0] + _points(home_rate, rng), score[1] + _points(away_rate, rng))
        if minute % 12 == 0:
            quarters.append((score[0] - q_start[0], score[1] - q_start[1]))
            q_start = score
            periods = {f"p{i + 1}": q for i, q in enumerate(quarters)}
            periods["result"] = score
            feed.add(t, "scores", score_payload(fx, periods, t))
            if minute < 48:
                name = "Halftime" if minute == 24 else f"Q{minute // 12 + 1}"
                feed.add(t + 0.1, "fixtures", fixture_payload(fx, 1, name, True, t + 0.1))
        if minute % PRICE_EVERY_MINUTES == 0 and minute < 48:
            emit_odds(feed, t + 0.05, fx, basketball_outcomes(fx, minute, score), rng)
    if score[0] == score[1]:  # no overtime in the sample: the home side hits a last free throw
        score = (score[0] + 1, score[1])
    t_end = fx.kickoff_s + 48 * BASKET_MINUTE_S + 3.5
    periods = {f"p{i + 1}": q for i, q in enumerate(quarters)}
    periods["p4"] = (periods["p4"][0] + (score[0] - q_start[0]), periods["p4"][1] + (score[1] - q_start[1]))
    periods["result"] = score
    feed.add(t_end, "scores", score_payload(fx, periods, t_end))
    feed.add(t_end + 0.1, "fixtures", fixture_payload(fx, 2, "Finished", False, t_end + 0.1))
    final = {
        111: float(score[0] > score[1]),
        112: float(score[0] < score[1]),
        121: float(sum(score) > 215.5),
        122: float(sum(score) < 215.5),
        131: float(score[0] - score[1] > 4.5),
        132: float(score[0] - score[1] < 4.5),
    }
    emit_odds(feed, t_end + 0.2, fx, final, rng, closed=True)


def _points(rate_per_minute: float, rng: random.Random) -> int:
    pts = 0
    for _ in range(4):  # four possessions a minute, roughly
        if rng.random() < rate_per_minute / 4 / 1.1:
            pts += 3 if rng.random() < 0.3 else 2
    return pts


def generate() -> tuple[ReplayHeader, list[tuple[int, str, dict]]]:
    rng = random.Random(SEED)
    feed = Feed()
    for fx in FIXTURES:
        if fx.sport_id == SOCCER:
            play_soccer(feed, fx, rng)
        else:
            play_basketball(feed, fx, rng)
    feed.events.sort(key=lambda e: (e[0], e[1]))
    header = ReplayHeader(
        base_time_ms=BASE_TIME_MS,
        description=(
            "Made-up sample feed generated by trading/feed/samples/make_sample.py (deterministic). "
            "Three soccer matches and two basketball games; bookmakers vertex and pinnacle."
        ),
        markets=SOCCER_MARKETS + BASKETBALL_MARKETS,
        extra={"generator": "trading.feed.samples.make_sample", "seed": SEED},
    )
    return header, [(t, channel, payload) for t, _, channel, payload in feed.events]


def write(path: Path) -> int:
    header, events = generate()
    with ReplayWriter(path, header) as writer:
        for t_ms, channel, payload in events:
            writer.write(channel, payload, t_ms=t_ms)
    return len(events)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    count = write(args.out)
    print(f"wrote {count} messages to {args.out}")


if __name__ == "__main__":
    main()
