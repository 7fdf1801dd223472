"""``manage.py seed_demo``: demo data for the MM engine, in every state the API and console show.

Idempotent: every row has a natural key (client name, exchange + username, tournament id,
fixture id, client order id, venue trade id, bet idempotency key) and is created only if absent,
so a second run changes nothing. Values come from a seeded ``random.Random`` drawn in the same
order on every run, and times are offsets from an anchor fixed at the first run (the demo
client's creation hour), so a rerun computes exactly the rows that exist.

Orders that reached a venue are really on the simulated venue (placed, matched and cancelled
through the connector, under the same client order ids and trade ids as our rows), so stop and
cancel work on the open ones and the fill poller finds nothing it has not already seen.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from exchanges.choices import Exchange
from exchanges.connectors.base import PlaceRequest
from exchanges.connectors.registry import get_connector
from hedging.choices import BetSettlementStatus as BS
from hedging.choices import BetStatus
from hedging.models import Bookmaker, HedgeBet
from trading.choices import FixtureStatus as FS
from trading.choices import MatchedStatus, OrderStatus
from trading.choices import SettlementStatus as SS
from trading.models import Client, ExchangeAccount, Fill, Fixture, Order, Tournament
from trading.services.clients import client_get_or_create

SEED = 20260215
CENT = Decimal("0.01")
ODDS_Q = Decimal("0.001")

# --- reference data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    name: str
    display_name: str
    quote_all_fixtures: bool
    accounts: tuple[tuple[str, str, Decimal], ...]  # (exchange, username, balance)


CLIENTS = (
    ClientSpec(
        "demo:vertex",
        "Demo Client",
        True,
        (
            (Exchange.POLYMARKET, "0x" + hashlib.sha256(b"demo:vertex").hexdigest()[:40], Decimal("50000")),
            (Exchange.KALSHI, "demo-vertex-mm", Decimal("25000")),
            (Exchange.BETFAIR, "demo_vertex_mm", Decimal("12000")),
        ),
    ),
    ClientSpec(
        "acme:pinnacle",
        "Acme Trading",
        False,
        (
            (Exchange.POLYMARKET, "0x" + hashlib.sha256(b"acme:pinnacle").hexdigest()[:40], Decimal("80000")),
            (Exchange.KALSHI, "acme-pinnacle", Decimal("40000")),
        ),
    ),
)

TOURNAMENTS = (
    # (tournament_id, name, sport_id, sport_name, quote_in_play)
    (17, "Premier League", 10, "Soccer", False),
    (132, "NBA", 11, "Basketball", True),
)


@dataclass(frozen=True)
class FixtureSpec:
    key: str
    fixture_id: str
    tournament_id: int
    home: str
    away: str
    start_hours: float  # from the anchor
    status: str
    score: tuple[int, int] | None = None
    periods: dict = field(default_factory=dict)


def _p(h1: int, a1: int, h2: int | None = None, a2: int | None = None) -> dict:
    periods = {"p1": {"participant1Score": h1, "participant2Score": a1}}
    if h2 is not None:
        periods["p2"] = {"participant1Score": h2, "participant2Score": a2}
    return periods


FIXTURES = (
    FixtureSpec("ars-che", "id1000099000000101", 17, "Arsenal", "Chelsea", 26, FS.NOT_STARTED),
    FixtureSpec("liv-mci", "id1000099000000102", 17, "Liverpool", "Manchester City", 50, FS.NOT_STARTED),
    FixtureSpec("tot-new", "id1000099000000103", 17, "Tottenham", "Newcastle", -0.8, FS.LIVE, (1, 0), _p(1, 0)),
    FixtureSpec(
        "avl-bha", "id1000099000000104", 17, "Aston Villa", "Brighton", -50, FS.FINISHED, (2, 1), _p(1, 0, 1, 1)
    ),
    FixtureSpec("eve-whu", "id1000099000000105", 17, "Everton", "West Ham", -74, FS.FINISHED, (0, 0), _p(0, 0, 0, 0)),
    FixtureSpec("bre-ful", "id1000099000000106", 17, "Brentford", "Fulham", -28, FS.CANCELLED),
    FixtureSpec("wol-cry", "id1000099000000107", 17, "Wolves", "Crystal Palace", 70, FS.POSTPONED),
    FixtureSpec(
        "lal-bos", "id1000099000000201", 132, "LA Lakers", "Boston Celtics", -1.2, FS.LIVE, (54, 61), _p(54, 61)
    ),
    FixtureSpec(
        "gsw-den",
        "id1000099000000202",
        132,
        "Golden State Warriors",
        "Denver Nuggets",
        -30,
        FS.FINISHED,
        (112, 108),
        _p(58, 49, 54, 59),
    ),
    FixtureSpec(
        "nyk-mia", "id1000099000000203", 132, "New York Knicks", "Miami Heat", -3, FS.INTERRUPTED, (33, 30), _p(33, 30)
    ),
    FixtureSpec("mil-phx", "id1000099000000204", 132, "Milwaukee Bucks", "Phoenix Suns", -52, FS.ABANDONED, (12, 9)),
    FixtureSpec("chi-bkn", "id1000099000000205", 132, "Chicago Bulls", "Brooklyn Nets", 30, FS.NOT_STARTED),
)

SETTLE_AFTER = {10: dt.timedelta(hours=2, minutes=10), 11: dt.timedelta(hours=2, minutes=40)}
BET_MIRROR = {SS.WON: BS.LOST, SS.LOST: BS.WON, SS.VOID: BS.VOID, SS.HALF_WON: BS.HALF_LOST, SS.HALF_LOST: BS.HALF_WON}

# --- the scenarios: one order each, per client ------------------------------------------------------------

# A fill's hedge: "placed", "pending", "declined", or None (never hedged). For placed bets on settled
# orders the bet settles as the mirror of the order unless the scenario says "lag" (bet not yet settled).
P, PEND, DECL, NONE = "placed", "pending", "declined", None


@dataclass(frozen=True)
class Scenario:
    fixture: str
    outcome: int
    status: str
    fills: tuple = ()  # hedge of each fill, in order
    fraction: str = "1"  # share of the stake matched when the order is only partly matched
    settlement: str = SS.UNDECIDED
    back: bool = True
    bet_lag: bool = False  # order settled, its bets not yet
    reason: str = ""


SCENARIOS = (
    # open: resting (or on its way) on the venue
    Scenario("ars-che", 111, OrderStatus.PENDING_PLACEMENT),
    Scenario("ars-che", 112, OrderStatus.PLACED),
    Scenario("liv-mci", 121, OrderStatus.PLACED),
    Scenario("chi-bkn", 132, OrderStatus.PLACED, back=False),
    Scenario("tot-new", 131, OrderStatus.PLACED, (P,), fraction="0.4"),
    Scenario("lal-bos", 151, OrderStatus.PLACED, (PEND,), fraction="0.5"),
    # closed, not settled yet
    Scenario("tot-new", 161, OrderStatus.FILLED, (P, P)),
    Scenario("lal-bos", 152, OrderStatus.FILLED, (DECL,)),
    Scenario("liv-mci", 122, OrderStatus.FAILED, reason="venue rejected: insufficient balance"),
    Scenario("ars-che", 141, OrderStatus.CANCELLED, reason="cancelled: quote replaced"),
    Scenario("tot-new", 162, OrderStatus.CANCELLED, (P,), fraction="0.3", reason="cancelled: odds moved"),
    Scenario("wol-cry", 171, OrderStatus.EXPIRED, reason="expired at kick-off"),
    Scenario("nyk-mia", 172, OrderStatus.FILLED, (P,)),
    # settled pairs: order and bet mirror each other
    Scenario("avl-bha", 111, OrderStatus.FILLED, (P,), settlement=SS.WON),
    Scenario("avl-bha", 112, OrderStatus.FILLED, (P, P), settlement=SS.LOST),
    Scenario("avl-bha", 141, OrderStatus.FILLED, (P,), settlement=SS.HALF_WON),
    Scenario("eve-whu", 142, OrderStatus.FILLED, (P,), settlement=SS.HALF_LOST),
    Scenario("bre-ful", 121, OrderStatus.FILLED, (P,), settlement=SS.VOID),
    Scenario("gsw-den", 151, OrderStatus.FILLED, (P,), settlement=SS.WON, back=False),
    Scenario(
        "gsw-den", 152, OrderStatus.EXPIRED, (P,), fraction="0.6", settlement=SS.LOST, reason="expired at tip-off"
    ),
    Scenario("eve-whu", 112, OrderStatus.CANCELLED, (P,), fraction="0.5", settlement=SS.WON, reason="cancelled: stop"),
    Scenario("mil-phx", 161, OrderStatus.FILLED, (P,), settlement=SS.VOID),
    # settled order whose bet the bookmaker has not settled yet
    Scenario("eve-whu", 111, OrderStatus.FILLED, (P,), settlement=SS.LOST, bet_lag=True),
    # naked: settled fills that never got a successful hedge
    Scenario("avl-bha", 161, OrderStatus.FILLED, (DECL,), settlement=SS.WON),
    Scenario("gsw-den", 171, OrderStatus.FILLED, (DECL, NONE), settlement=SS.LOST),
)

#: The demo client's account on the simulated venue, where the live loop (bin/run) quotes.
LIVE_ACCOUNT = "demo-vertex-sim"

DECLINE_REASONS = ("price moved beyond tolerance", "stake above bookmaker limit", "market suspended")

CREDENTIALS = {
    Exchange.POLYMARKET: lambda u: {
        "private_key": "0xdemo" + hashlib.sha256(u.encode()).hexdigest()[:58],
        "api_key": "demo-" + hashlib.md5(u.encode()).hexdigest()[:24],  # noqa: S324 - demo value, not security
        "api_secret": "demo-secret-" + hashlib.sha256(b"s" + u.encode()).hexdigest()[:32],
        "api_passphrase": "demo-passphrase",
    },
    Exchange.KALSHI: lambda u: {
        "key_id": "demo-" + hashlib.sha256(u.encode()).hexdigest()[:32],
        "private_key_pem": "-----BEGIN DEMO PRIVATE KEY-----\nnot-a-real-key\n-----END DEMO PRIVATE KEY-----",
    },
    Exchange.BETFAIR: lambda u: {
        "app_key": "demo-" + hashlib.sha256(u.encode()).hexdigest()[:16],
        "username": u,
        "password": "demo-password",
        "cert_pem": "-----BEGIN DEMO CERTIFICATE-----\nnot-a-real-cert\n-----END DEMO CERTIFICATE-----",
    },
}


def exchange_outcome_id(exchange: str, fx: FixtureSpec, outcome: int) -> str:
    """A venue market id in the venue's own shape (deterministic)."""
    digest = hashlib.sha256(f"{fx.fixture_id}:{outcome}".encode()).hexdigest()
    if exchange == Exchange.POLYMARKET:
        return str(int(digest[:32], 16))  # a CLOB token id
    if exchange == Exchange.KALSHI:
        return f"KX{fx.key.replace('-', '').upper()}-{outcome}"
    return f"1.{int(digest[:8], 16) % 10**9}:{int(digest[8:14], 16) % 10**6}"  # Betfair market:selection


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


class Seeder:
    def __init__(self, out):
        self.out = out
        self.rng = random.Random(SEED)
        self.created: Counter[str] = Counter()

    # --- reference data --------------------------------------------------------------------------------

    def clients(self) -> list[tuple[Client, list[ExchangeAccount]]]:
        result = []
        for spec in CLIENTS:
            client, created = client_get_or_create(name=spec.name, display_name=spec.display_name)
            if created:
                self.created["clients"] += 1
                Client.objects.filter(pk=client.pk).update(quote_all_fixtures=spec.quote_all_fixtures)
                Bookmaker.objects.filter(pk=client.hedge_bookmaker_id).update(
                    simulated=True, display_name=client.bookmaker_code.title()
                )
            accounts = []
            for exchange, username, balance in spec.accounts:
                account, created = ExchangeAccount.objects.get_or_create(
                    exchange=exchange,
                    username=username,
                    defaults={"client": client, "balance": balance, "max_outcome_stake": Decimal("1000")},
                )
                if created:
                    self.created["exchange accounts"] += 1
                if not account.has_credentials:  # encrypted once: ciphertext differs on every encryption
                    account.set_credentials(CREDENTIALS[exchange](username))
                    account.save(update_fields=["credentials_encrypted", "updated_at"])
                accounts.append(account)
            result.append((client, accounts))
        return result

    def fixtures(self, anchor: dt.datetime) -> dict[str, Fixture]:
        tournaments = {}
        for tid, name, sport_id, sport_name, in_play in TOURNAMENTS:
            t, created = Tournament.objects.get_or_create(
                tournament_id=tid,
                defaults={"name": name, "sport_id": sport_id, "sport_name": sport_name, "quote_in_play": in_play},
            )
            self.created["tournaments"] += created
            tournaments[tid] = t
        fixtures = {}
        for fx in FIXTURES:
            t = tournaments[fx.tournament_id]
            f, created = Fixture.objects.get_or_create(
                fixture_id=fx.fixture_id,
                defaults={
                    "tournament": t,
                    "sport_id": t.sport_id,
                    "sport_name": t.sport_name,
                    "participant1_name": fx.home,
                    "participant2_name": fx.away,
                    "start_time": anchor + dt.timedelta(hours=fx.start_hours),
                    "status": fx.status,
                    "participant1_score": fx.score[0] if fx.score else None,
                    "participant2_score": fx.score[1] if fx.score else None,
                    "period_scores": fx.periods,
                },
            )
            self.created["fixtures"] += created
            fixtures[fx.key] = f
        return fixtures

    # --- orders, fills, bets ------------------------------------------------------------------------------

    def orders(self, client: Client, accounts: list[ExchangeAccount], fixtures: dict[str, Fixture], anchor) -> None:
        slug = client.name.replace(":", "-")
        specs = {fx.key: fx for fx in FIXTURES}
        for i, sc in enumerate(SCENARIOS):
            # Every draw happens whether or not the row exists, so reruns see the same numbers.
            draw = {
                "price": Decimal(self.rng.randint(25, 70)) / 100,
                "stake": Decimal(self.rng.choice((50, 100, 150, 200, 250, 300))),
                "edge": Decimal(self.rng.randint(25, 60)) / 1000,
                "drift": Decimal(self.rng.randint(0, 25)) / 1000,
                "limit": Decimal(self.rng.choice((500, 1000, 2500, 5000, 10000))),
                "lead_min": self.rng.randint(20, 600),
                "fill_secs": [self.rng.randint(5, 1200) for _ in range(3)],
                "bet_ids": [self.rng.randint(10**8, 10**9 - 1) for _ in range(3)],
                "attempts": [self.rng.randint(1, 3) for _ in range(3)],
                "decline": [self.rng.choice(DECLINE_REASONS) for _ in range(3)],
                "split": self.rng.randint(30, 70),
            }
            account = accounts[i % len(accounts)]
            client_order_id = f"mm-{slug}-{i + 1:04d}"
            if Order.objects.filter(client_order_id=client_order_id).exists():
                continue
            with transaction.atomic():
                self._order(client, account, fixtures[sc.fixture], specs[sc.fixture], sc, client_order_id, draw, anchor)

    def _order(self, client, account, fixture: Fixture, fx: FixtureSpec, sc: Scenario, coid: str, d: dict, anchor):
        price, stake, back = d["price"], d["stake"], sc.back
        # The bookmaker odds that made the quote: the other side for a buy, the same side for a sell,
        # leaving ``edge`` per contract (see trading.selectors.pnl for the PnL of a pair).
        implied = (1 - price - d["edge"]) if back else (price - d["edge"])
        book_odds = (1 / implied).quantize(ODDS_Q)
        created_at = min(fixture.start_time, anchor) - dt.timedelta(minutes=d["lead_min"])
        matched = (stake * Decimal(sc.fraction)).quantize(Decimal("1")) if sc.fills else Decimal("0")
        matched_status = (
            MatchedStatus.NOT_MATCHED
            if not matched
            else MatchedStatus.FULLY_MATCHED
            if matched == stake
            else MatchedStatus.PARTIALLY_MATCHED
        )
        order = Order.objects.create(
            client=client,
            account=account,
            fixture=fixture,
            exchange=account.exchange,
            outcome_id=sc.outcome,
            client_order_id=coid,
            exchange_outcome_id=exchange_outcome_id(account.exchange, fx, sc.outcome),
            order_status=sc.status,
            matched_status=matched_status,
            order_cents=price,
            order_stake=stake,
            matched_stake=matched,
            back=back,
            bookmaker_outcome_price=book_odds,
            bookmaker_outcome_limit=d["limit"],
            bookmaker_outcome_active=sc.status != OrderStatus.FAILED,
            status_reason=sc.reason,
            created_at=created_at,
            updated_at=created_at,
        )
        self.created["orders"] += 1

        venue = get_connector(account.exchange)
        venue_order = None
        if sc.status != OrderStatus.FAILED:  # a failed order was refused: the venue holds nothing
            venue_order = venue.place(
                PlaceRequest(
                    client_order_id=coid,
                    account=account.username,
                    market=order.exchange_outcome_id,
                    side=order.side,
                    price=price,
                    size=stake,
                )
            )
            order.exchange_order_id = venue_order.venue_order_id

        # Fills: split the matched stake over the scenario's fills; each is a real venue trade.
        sizes = self._split(matched, len(sc.fills), d["split"])
        last = created_at
        settled_at = None
        if sc.settlement != SS.UNDECIDED:
            settled_at = fixture.start_time + SETTLE_AFTER.get(fixture.sport_id, dt.timedelta(hours=2))
        for k, (hedge, size) in enumerate(zip(sc.fills, sizes, strict=True)):
            trade_id = f"{coid}-t{k + 1}"
            at = min(last + dt.timedelta(seconds=d["fill_secs"][k]), anchor)
            venue.match(venue_order_id=venue_order.venue_order_id, size=size, trade_id=trade_id)
            fill = Fill.objects.create(
                order=order,
                client=client,
                exchange=account.exchange,
                venue_trade_id=trade_id,
                price=price,
                stake=size,
                source="stream" if k % 2 == 0 else "poll",
                matched_at=at,
            )
            Fill.objects.filter(pk=fill.pk).update(created_at=at)
            self.created["fills"] += 1
            last = at
            if hedge is not None:
                self._bet(client, order, fill, hedge, book_odds, d, k, sc, settled_at)
        if venue_order is not None and sc.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
            venue.cancel(account=account.username, venue_order_id=venue_order.venue_order_id)

        order.matched_at = last if matched else None
        order.settlement_status = sc.settlement
        order.settled_at = settled_at
        # The last status change: the last fill, or the close (cancel, expiry, refusal) shortly after.
        closed = sc.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.FAILED)
        order.updated_at = settled_at or (min(last + dt.timedelta(minutes=3), anchor) if closed else last)
        order.save(update_fields=["exchange_order_id", "matched_at", "settlement_status", "settled_at", "updated_at"])

    def _bet(self, client, order, fill, hedge: str, book_odds: Decimal, d: dict, k: int, sc: Scenario, settled_at):
        odds = max(book_odds - d["drift"], Decimal("1.01"))
        stake = (fill.stake / odds).quantize(CENT, rounding=ROUND_CEILING)  # pricing.hedge_stake
        settled = hedge == P and sc.settlement != SS.UNDECIDED and not sc.bet_lag
        bet = HedgeBet.objects.create(
            client=client,
            order=order,
            fill=fill,
            bookmaker=client.hedge_bookmaker,
            idempotency_key=f"hedge:{fill.exchange}:{fill.venue_trade_id}",
            bookmaker_bet_id=str(d["bet_ids"][k]) if hedge == P else "",
            placed_price=odds if hedge != PEND else book_odds,
            placed_stake=stake,
            bet_status={P: BetStatus.PLACED, PEND: BetStatus.PENDING, DECL: BetStatus.DECLINED}[hedge],
            settlement_status=BET_MIRROR[sc.settlement] if settled else BS.UNDECIDED,
            decline_reason=d["decline"][k] if hedge == DECL else "",
            attempts=d["attempts"][k] if hedge == DECL else 1,
            placed_at=fill.matched_at + dt.timedelta(seconds=3) if hedge == P else None,
            settled_at=settled_at if settled else None,
        )
        HedgeBet.objects.filter(pk=bet.pk).update(created_at=fill.matched_at + dt.timedelta(seconds=1))
        self.created["hedge bets"] += 1

    @staticmethod
    def _split(total: Decimal, n: int, pct: int) -> list[Decimal]:
        if n == 0:
            return []
        if n == 1:
            return [total]
        first = max((total * pct / 100).quantize(Decimal("1")), Decimal("1"))
        rest = total - first
        return [first, *Seeder._split(rest, n - 1, pct)]

    # --- the live loop ---------------------------------------------------------------------------------------

    def live_account(self, client: Client) -> ExchangeAccount:
        """The demo client's account on the simulated venue: with ``quote_all_fixtures`` it quotes every
        fixture the odds feed sends there (the feed maps each outcome to a simulated market) and hedges
        on its bookmaker, ``vertex`` (simulated). Kept apart from the scenario accounts above."""
        account, created = ExchangeAccount.objects.get_or_create(
            exchange=Exchange.SIMULATED,
            username=LIVE_ACCOUNT,
            defaults={"client": client, "balance": Decimal("100000"), "max_outcome_stake": Decimal("1000")},
        )
        self.created["exchange accounts"] += created
        if not account.has_credentials:
            account.set_credentials({"api_key": "sim-" + hashlib.sha256(LIVE_ACCOUNT.encode()).hexdigest()[:24]})
            account.save(update_fields=["credentials_encrypted", "updated_at"])
        return account

    # --- the console user ------------------------------------------------------------------------------------

    def superuser(self) -> str:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return "console superuser exists (not changed)"
        if not settings.DEBUG:
            # A well-known password must never reach a deployment; production uses createsuperuser.
            return "DEBUG is off: no demo superuser created (use manage.py createsuperuser)"
        if User.objects.filter(username="admin").exists():
            return "user 'admin' exists but is not a superuser: not changed (use createsuperuser)"
        User.objects.create_superuser("admin", "admin@example.com", "admin")
        return "console superuser created: admin / admin (change the password outside a demo)"


class Command(BaseCommand):
    help = (
        "Load idempotent demo data: clients demo:vertex and acme:pinnacle, accounts on polymarket, kalshi, "
        "betfair and (for the live loop) the simulated venue, fixtures in every status, orders in every state with "
        "fills and hedge bets, settled and open positions; and the console superuser admin/admin if there is none."
    )

    def handle(self, *args, **options) -> None:
        seeder = Seeder(self.stdout)
        with transaction.atomic():
            pairs = seeder.clients()
            demo = pairs[0][0]
            seeder.live_account(demo)
            anchor = floor_hour(demo.created_at)  # fixed at the first run: reruns compute the same times
            fixtures = seeder.fixtures(anchor)
            for client, accounts in pairs:
                seeder.orders(client, accounts, fixtures, anchor)
            user_line = seeder.superuser()
        self._summary(seeder, [c for c, _ in pairs], user_line)
        from exchanges.services.demo import exchange_demo_seed  # the house exchange's pairs and liquidity

        exchange_demo_seed(write=self.stdout.write)

    def _summary(self, seeder: Seeder, clients: list[Client], user_line: str) -> None:
        made = ", ".join(f"{n} {what}" for what, n in seeder.created.items() if n) or "nothing (already seeded)"
        self.stdout.write(f"seed_demo: created {made}")
        orders = Order.objects.filter(client__in=clients)
        by_status = Counter(orders.values_list("order_status", flat=True))
        self.stdout.write(
            f"  clients {', '.join(c.name for c in clients)}; "
            f"{ExchangeAccount.objects.filter(client__in=clients).count()} exchange accounts; "
            f"{Fixture.objects.filter(fixture_id__in=[f.fixture_id for f in FIXTURES]).count()} fixtures"
        )
        self.stdout.write(f"  orders: {', '.join(f'{s} {by_status[s]}' for s in OrderStatus.values)}")
        bets = Counter(HedgeBet.objects.filter(client__in=clients).values_list("bet_status", flat=True))
        self.stdout.write(
            f"  fills: {Fill.objects.filter(client__in=clients).count()}; "
            f"hedge bets: {', '.join(f'{s} {bets[s]}' for s in BetStatus.values)}"
        )
        self.stdout.write(f"  {user_line}")
        self.stdout.write("  API key for the demo client: python manage.py create_client demo:vertex")
