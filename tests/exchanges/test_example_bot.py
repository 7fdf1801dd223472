"""The seed's example market-making bot, unchanged, with the seed system's own SDK, against our server.

A daphne process serves the test database (PostgreSQL) with the Redis channel layer and cache; the
bot (tests/exchanges/example_bot/example_exchange_bot.py, byte-identical to seed 004) runs in paper
mode as a subprocess. A taker trades against its paper quotes and the live mid moves; the test reads
the bot's own log lines and the database to check that it read pair info and balance, quoted both
sides, saw its fills, requoted on drift, and cancelled everything when stopped with SIGINT.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from exchanges.models import ExchangeOrder, TraderTier
from exchanges.services.orders import order_place, orders_cancel_all
from exchanges.services.traders import trader_key_create

from .conftest import make_market, make_trader

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "tests" / "exchanges" / "example_bot" / "example_exchange_bot.py"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _db_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def daphne_server(tmp_path):
    """daphne on a loopback port, serving the (committed) test database."""
    port = _free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_db_url(),
        DJANGO_SETTINGS_MODULE="mmsite.settings.test",  # the same password hasher as the test process
        CELERY_TASK_ALWAYS_EAGER="true",
        DB_CONN_MAX_AGE="0",
        LOG_LEVEL="WARNING",
    )
    log = open(tmp_path / "daphne.log", "w")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mmsite.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/v1/exchange/time", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("daphne did not start:\n" + (tmp_path / "daphne.log").read_text())
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class BotLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        return self.path.read_text() if self.path.exists() else ""

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.compile(pattern).search(self.text(), after)
            if m:
                return m
            time.sleep(0.2)
        raise AssertionError(f"the bot never logged {pattern!r}:\n{self.text()[-4000:]}")


def _live_quotes(mm, bid: str, ask: str) -> None:
    orders_cancel_all(trader=mm, symbol="vaix", mode="live")
    order_place(trader=mm, symbol="vaix", side="buy", type="limit", quantity=D("5000"), price=D(bid))
    order_place(trader=mm, symbol="vaix", side="sell", type="limit", quantity=D("5000"), price=D(ask))


def _soak(bot, bot_trader, taker, mm, log: BotLog, seconds: float) -> None:
    """A paper taker hits the bot's quotes every two seconds, and the live mid moves every 30 s."""
    if seconds <= 0:
        return
    mids = [("0.003500", "0.003700"), ("0.003000", "0.003200"), ("0.004000", "0.004200")]
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        assert bot.poll() is None, log.text()[-4000:]
        for o in _bot_open(bot_trader):
            side = "sell" if o.side == "buy" else "buy"
            order_place(
                trader=taker, symbol="vaix", side=side, type="ioc", quantity=D("5"), price=o.price, mode="paper"
            )
        n += 1
        if n % 15 == 0:
            _live_quotes(mm, *mids[(n // 15) % len(mids)])
        time.sleep(2)
    text = log.text()
    assert "Cycle error" not in text, text[-4000:]
    orders = ExchangeOrder.objects.filter(trader=bot_trader, mode="paper").count()
    fills, requotes = text.count("new fill(s)"), text.count("Mid drifted")
    print(f"soak {seconds:.0f} s: {fills} fill batches seen, {requotes} requotes on drift, {orders} bot orders")


def _bot_open(bot_trader, mode="paper"):
    return list(ExchangeOrder.objects.live().filter(trader=bot_trader, mode=mode).order_by("side", "price"))


def test_seed_example_bot_quotes_sees_fills_requotes_and_cancels_on_sigint(daphne_server, tmp_path):
    make_market("vaix", tick_size="0.000001", lot_size="1", min_order_size="1")
    mm = make_trader("live-mm", funds={"USDC": 100000, "VAIX": 10_000_000})
    bot_trader = make_trader("example-bot", paper_funds={"USDC": 10000, "VAIX": 1_000_000})
    # the bot polls about twice a second per call; the market-maker tier's limits fit that
    bot_trader.tier = TraderTier.MARKET_MAKER
    bot_trader.save(update_fields=["tier"])
    taker = make_trader("paper-taker", paper_funds={"USDC": 10000, "VAIX": 1_000_000})
    _live_quotes(mm, "0.003000", "0.003200")  # live mid 0.0031: the bot prices its paper quotes off it
    key = trader_key_create(trader=bot_trader)[1]

    log = BotLog(tmp_path / "bot.log")
    with open(log.path, "w") as out:
        bot = subprocess.Popen(
            [
                sys.executable,
                str(BOT),
                "--pair",
                "vaix",
                "--api-key",
                key,
                "--base-url",
                daphne_server,
                "--refresh",
                "1",
                "--size",
                "100",
                "--spread-bps",
                "50",
                "--drift-bps",
                "25",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("ET_")},
        )
    try:
        # startup: pair info and balance
        log.wait_for(r"Pair: vaix \| tick=0\.000001 \| lot=1 \| min=1")
        log.wait_for(r"Balance: \{")
        # both sides quoted, post_only, in paper mode, around the live mid
        log.wait_for(r"BID placed: ord_")
        log.wait_for(r"ASK placed: ord_")
        quotes = _bot_open(bot_trader)
        assert [(o.side, o.order_type, o.price) for o in quotes] == [
            ("buy", "post_only", D("0.003092")),
            ("sell", "post_only", D("0.003108")),
        ]
        assert not _bot_open(bot_trader, mode="live")  # paper only

        # a paper taker hits both quotes: the bot sees its fills through trades/mine
        mark = len(log.text())
        order_place(
            trader=taker, symbol="vaix", side="sell", type="ioc", quantity=D("30"), price=D("0.003092"), mode="paper"
        )
        order_place(
            trader=taker, symbol="vaix", side="buy", type="ioc", quantity=D("40"), price=D("0.003108"), mode="paper"
        )
        log.wait_for(r"\*\*\* \d+ new fill\(s\) \*\*\*", after=mark)
        log.wait_for(r"Trades: 2\b", after=mark)

        # the live mid moves 16%: the bot cancels its quotes and requotes around the new mid
        mark = len(log.text())
        _live_quotes(mm, "0.003500", "0.003700")
        log.wait_for(r"Mid drifted [\d.]+ bps", after=mark)
        log.wait_for(r"ASK placed: ord_", after=mark)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            prices = [o.price for o in _bot_open(bot_trader)]
            if prices == [D("0.003591"), D("0.00361")]:
                break
            time.sleep(0.2)
        assert prices == [D("0.003591"), D("0.00361")], prices
        assert ExchangeOrder.objects.filter(trader=bot_trader, status="cancelled").count() >= 2

        # EXAMPLE_BOT_SOAK_SECONDS=300: keep trading against it for minutes (by hand; CI runs 0)
        _soak(bot, bot_trader, taker, mm, log, float(os.environ.get("EXAMPLE_BOT_SOAK_SECONDS", "0")))

        # SIGINT: the bot cancels everything it has open and exits
        bot.send_signal(signal.SIGINT)
        assert bot.wait(30) == 0, log.text()[-4000:]
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(5)
    text = log.text()
    assert "Shutting down — cancelling orders..." in text and "Final: Position:" in text
    assert _bot_open(bot_trader) == []
    assert _bot_open(bot_trader, mode="live") == []


def test_seed_example_bot_logs_in_with_email_and_password(daphne_server, tmp_path):
    """The bot's other way in: ``--email/--password`` (the SDK's ``POST /auth/login``, then Bearer JWT)."""
    make_market("vaix", tick_size="0.000001", lot_size="1", min_order_size="1")
    mm = make_trader("live-mm", funds={"USDC": 100000, "VAIX": 10_000_000})
    bot_trader = make_trader("jwt-bot", paper_funds={"USDC": 10000, "VAIX": 1_000_000})
    bot_trader.tier = TraderTier.MARKET_MAKER
    bot_trader.save(update_fields=["tier"])
    _live_quotes(mm, "0.003000", "0.003200")

    log = BotLog(tmp_path / "bot.log")
    with open(log.path, "w") as out:
        bot = subprocess.Popen(
            [sys.executable, str(BOT), "--pair", "vaix", "--base-url", daphne_server, "--refresh", "1"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("ET_")},
                "ET_EMAIL": "jwt-bot@example.com",
                "ET_PASSWORD": "pw-jwt-bot",
            },
        )
    try:
        log.wait_for(r"BID placed: ord_")
        log.wait_for(r"ASK placed: ord_")
        assert len(_bot_open(bot_trader)) == 2
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(30) == 0, log.text()[-4000:]
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(5)
    assert "Shutting down — cancelling orders..." in log.text()
    assert _bot_open(bot_trader) == []
