"""Bookmaker odds -> exchange quote: the pricing maths of the MM engine, pure (no Django).

The model (derivation and worked examples in ``docs/engine-pricing.md``):

* An exchange contract on outcome X pays 1 unit if X happens. Order stakes are counted in
  contracts, prices are probabilities in ``[0.01, 0.99]`` on a per-tournament tick grid.
* **Sell side** (``back=False``): the engine sells X at price ``p`` and hedges every filled
  contract by backing X at the bookmaker at decimal odds ``o`` (implied ``q = 1/o``) with a hedge
  stake of ``1/o`` per contract. ``s`` contracts then lock ``s * (p - q)`` whatever happens, so
  the quote is ``p = ceil_to_tick(q + edge)``.
* **Buy side** (``back=True``): with the odds ``o'`` of not-X (the complement), the engine buys X
  at ``p = floor_to_tick(1 - q' - edge)`` and hedges by backing not-X with ``1/o'`` per contract,
  locking ``s * (1 - q' - p)``.

Every rounding is explicit and goes the safe way: prices of sells up, prices of buys down, sizes
down, hedge stakes up, and the implied probability ``1/o`` is rounded *up* so that the edge we
compute is never more than the true one.

Functions return a :class:`Quote` or a :class:`NoQuote` with a machine-readable reason; they never
raise on bad market data (odds out of bounds, NaN, no limit), only on a bad configuration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, InvalidOperation

__all__ = [
    "MAX_ODDS",
    "MIN_ODDS",
    "SIZING_FIXED",
    "SIZING_LIMIT_FRACTION",
    "NoQuote",
    "PricingConfig",
    "Quote",
    "Reason",
    "Side",
    "ceil_to_tick",
    "check_odds",
    "floor_to_tick",
    "hedge_stake",
    "implied_probability",
    "quote_buy",
    "quote_sell",
    "requote_needed",
]

ZERO = Decimal(0)
ONE = Decimal(1)
CENT = Decimal("0.01")

#: Sane bounds of bookmaker decimal odds: outside ``(MIN_ODDS, MAX_ODDS)`` we do not quote.
#: Odds at or below 1.01 leave no room for an edge on a 0.99 price cap; odds of 1000 and more are
#: placeholders ("not offered") on many books, not prices.
MIN_ODDS = Decimal("1.01")
MAX_ODDS = Decimal("1000")

#: The venues' hard price range (seed 000: ``orderCents`` 0.01-0.99).
VENUE_MIN_PRICE = Decimal("0.01")
VENUE_MAX_PRICE = Decimal("0.99")

#: Sizing modes; the same strings as ``trading.choices.SizingMode`` (a test keeps them equal;
#: this module cannot import the Django choices).
SIZING_FIXED = "fixed"
SIZING_LIMIT_FRACTION = "limit_fraction"

# Directed-rounding contexts. 28 significant digits, like the default context, but every inexact
# result rounds the way that keeps the engine safe.
_UP = Context(prec=28, rounding=ROUND_CEILING)
_DOWN = Context(prec=28, rounding=ROUND_FLOOR)
_HEDGE_PER_CONTRACT_QUANTUM = Decimal("0.000001")
_EDGE_QUANTUM = Decimal("0.000001")  # edges are reported rounded down: never overstated


class Side(enum.StrEnum):
    """Our side on the exchange. ``back`` in the seed's order object is ``side == BUY``."""

    BUY = "buy"
    SELL = "sell"

    @property
    def back(self) -> bool:
        return self is Side.BUY


class Reason(enum.StrEnum):
    """Why no quote was produced."""

    ODDS_NOT_A_NUMBER = "odds_not_a_number"
    ODDS_NOT_FINITE = "odds_not_finite"
    ODDS_TOO_LOW = "odds_too_low"
    ODDS_TOO_HIGH = "odds_too_high"
    INACTIVE = "outcome_inactive"
    PRICE_ABOVE_MAX = "price_above_max"
    PRICE_BELOW_MIN = "price_below_min"
    NO_BOOKMAKER_LIMIT = "no_bookmaker_limit"
    OUTCOME_CAP_REACHED = "outcome_cap_reached"
    BELOW_MIN_SIZE = "below_min_size"


@dataclass(frozen=True, slots=True)
class Quote:
    """A limit order the engine wants resting on the exchange.

    ``edge`` is the locked profit per contract against the hedge (``p - 1/o`` for a sell,
    ``1 - 1/o' - p`` for a buy), at least the configured edge. ``hedge_odds`` are the odds the
    fill will be hedged at; the hedge stake for ``n`` filled contracts is
    ``hedge_stake(n, hedge_odds)``.
    """

    side: Side
    price: Decimal
    size: Decimal
    hedge_stake_per_contract: Decimal
    edge: Decimal
    hedge_odds: Decimal

    @property
    def back(self) -> bool:
        return self.side is Side.BUY


@dataclass(frozen=True, slots=True)
class NoQuote:
    reason: Reason
    detail: str = ""

    def __bool__(self) -> bool:  # ``if result:`` reads as "did we get a quote"
        return False


@dataclass(frozen=True, slots=True)
class PricingConfig:
    """Per-tournament quoting configuration (``trading.models.Tournament``) plus the account cap.

    ``max_outcome_stake`` is the exchange account's ``maxOutcomeStake`` in contracts (None: no
    cap). ``lot`` is the venue's size increment; ``min_size`` defaults to one lot.
    """

    edge: Decimal = Decimal("0.02")
    tick: Decimal = Decimal("0.01")
    min_price: Decimal = Decimal("0.02")
    max_price: Decimal = Decimal("0.98")
    sizing_mode: str = SIZING_FIXED
    fixed_stake: Decimal = Decimal("100")
    limit_fraction: Decimal = Decimal("0.1")
    max_outcome_stake: Decimal | None = None
    lot: Decimal = ONE
    min_size: Decimal | None = None
    # Derived: the bounds moved onto the tick grid (inside [min_price, max_price]).
    lo: Decimal = field(init=False, repr=False, compare=False)
    hi: Decimal = field(init=False, repr=False, compare=False)
    size_floor: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (ZERO < self.tick < ONE):
            raise ValueError(f"tick must be in (0, 1), got {self.tick}")
        if not (VENUE_MIN_PRICE <= self.min_price < self.max_price <= VENUE_MAX_PRICE):
            raise ValueError(f"need 0.01 <= min_price < max_price <= 0.99, got {self.min_price}, {self.max_price}")
        if self.edge < ZERO:
            raise ValueError("edge must be >= 0")
        if self.lot <= ZERO:
            raise ValueError("lot must be > 0")
        if self.sizing_mode not in (SIZING_FIXED, SIZING_LIMIT_FRACTION):
            raise ValueError(f"unknown sizing mode {self.sizing_mode!r}")
        if self.sizing_mode == SIZING_FIXED and self.fixed_stake <= ZERO:
            raise ValueError("fixed_stake must be > 0")
        if not (ZERO < self.limit_fraction <= ONE):
            raise ValueError("limit_fraction must be in (0, 1]")
        if self.max_outcome_stake is not None and self.max_outcome_stake < ZERO:
            raise ValueError("max_outcome_stake must be >= 0")
        lo = ceil_to_tick(self.min_price, self.tick)
        hi = floor_to_tick(self.max_price, self.tick)
        if lo > hi:
            raise ValueError(f"no tick of {self.tick} inside [{self.min_price}, {self.max_price}]")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        min_size = self.lot if self.min_size is None else self.min_size
        object.__setattr__(self, "size_floor", max(min_size, self.lot))


# --- small pieces -------------------------------------------------------------------------------


def ceil_to_tick(x: Decimal, tick: Decimal) -> Decimal:
    """The smallest multiple of ``tick`` that is ``>= x``."""
    return _UP.divide(x, tick).to_integral_value(rounding=ROUND_CEILING) * tick


def floor_to_tick(x: Decimal, tick: Decimal) -> Decimal:
    """The largest multiple of ``tick`` that is ``<= x``."""
    return _DOWN.divide(x, tick).to_integral_value(rounding=ROUND_FLOOR) * tick


def check_odds(odds: object) -> Reason | None:
    """None when ``odds`` are decimal odds we may quote from, else the reason they are not."""
    if not isinstance(odds, Decimal):
        return Reason.ODDS_NOT_A_NUMBER
    if not odds.is_finite():
        return Reason.ODDS_NOT_FINITE
    if odds <= MIN_ODDS:
        return Reason.ODDS_TOO_LOW
    if odds >= MAX_ODDS:
        return Reason.ODDS_TOO_HIGH
    return None


def implied_probability(odds: Decimal) -> Decimal:
    """``1/odds`` rounded up (28 digits): never below the true value, so edges are conservative."""
    return _UP.divide(ONE, odds)


def hedge_stake(contracts: Decimal, odds: Decimal, quantum: Decimal = CENT) -> Decimal:
    """Bookmaker stake that hedges ``contracts`` at ``odds``: ``contracts / odds``, rounded *up*
    to ``quantum`` (the bookmaker's stake increment).

    Rounding up covers the whole exchange liability when the hedged outcome wins; the cost is at
    most one ``quantum`` of profit when it loses. Rounding down would leave up to
    ``quantum * (odds - 1)`` uncovered, which is worse at long odds.
    """
    if contracts <= ZERO:
        return ZERO
    return _UP.divide(contracts, odds).quantize(quantum, rounding=ROUND_CEILING)


def requote_needed(
    old_price: Decimal | None,
    old_size: Decimal | None,
    new_price: Decimal,
    new_size: Decimal,
    tick: Decimal,
    size_tolerance: Decimal = Decimal("0.10"),
) -> bool:
    """Replace the resting order when the price moved by a tick or more, or the size changed by
    more than ``size_tolerance`` (a fraction of the old size). No resting order: always quote."""
    if old_price is None or old_size is None:
        return True
    if abs(new_price - old_price) >= tick:
        return True
    if old_size <= ZERO:
        return new_size > ZERO
    return abs(new_size - old_size) > size_tolerance * old_size


# --- sizing -------------------------------------------------------------------------------------


def _size(cfg: PricingConfig, hedge_odds: Decimal, limit: Decimal | None, existing_stake: Decimal) -> Decimal | NoQuote:
    """Contracts to offer. The hedge of ``s`` contracts is ``s / hedge_odds``, so a bookmaker
    limit ``L`` admits at most ``L * hedge_odds`` contracts."""
    if cfg.sizing_mode == SIZING_LIMIT_FRACTION:
        if limit is None or not limit.is_finite() or limit <= ZERO:
            return NoQuote(Reason.NO_BOOKMAKER_LIMIT)
        size = _DOWN.multiply(_DOWN.multiply(cfg.limit_fraction, limit), hedge_odds)
    else:
        size = cfg.fixed_stake
        # A fixed stake whose hedge would not fit the bookmaker's whole limit would leave the
        # excess unhedged: cap it when the feed gives a limit (a zero limit admits nothing).
        if limit is not None and limit.is_finite():
            size = min(size, _DOWN.multiply(max(limit, ZERO), hedge_odds))
    if cfg.max_outcome_stake is not None:
        room = cfg.max_outcome_stake - existing_stake
        if room <= ZERO:
            return NoQuote(Reason.OUTCOME_CAP_REACHED)
        size = min(size, room)
    size = _DOWN.divide(size, cfg.lot).to_integral_value(rounding=ROUND_FLOOR) * cfg.lot
    if size < cfg.size_floor:
        return NoQuote(Reason.BELOW_MIN_SIZE, f"{size} < {cfg.size_floor}")
    return size


# --- quotes -------------------------------------------------------------------------------------


def quote_sell(
    odds: Decimal,
    limit: Decimal | None,
    cfg: PricingConfig,
    *,
    active: bool = True,
    existing_stake: Decimal = ZERO,
) -> Quote | NoQuote:
    """Sell (lay) outcome X on the exchange, to be hedged by backing X at ``odds``.

    ``p = ceil_to_tick(1/odds + edge)``, raised to the lowest on-grid price if below
    ``min_price``; no quote if it lies above ``max_price`` (clipping down would give away edge).
    """
    if not active:
        return NoQuote(Reason.INACTIVE)
    if type(odds) is not Decimal or not odds.is_finite() or odds <= MIN_ODDS or odds >= MAX_ODDS:
        return NoQuote(check_odds(odds), str(odds))
    q = _UP.divide(ONE, odds)
    price = ceil_to_tick(_UP.add(q, cfg.edge), cfg.tick)
    if price > cfg.hi:
        return NoQuote(Reason.PRICE_ABOVE_MAX, f"{price} > {cfg.hi}")
    if price < cfg.lo:
        price = cfg.lo  # a higher sell price only adds edge
    size = _size(cfg, odds, limit, existing_stake)
    if isinstance(size, NoQuote):
        return size
    return Quote(  # positional: this runs once per tick
        Side.SELL,
        price,
        size,
        q.quantize(_HEDGE_PER_CONTRACT_QUANTUM, rounding=ROUND_CEILING),
        _DOWN.subtract(price, q).quantize(_EDGE_QUANTUM, rounding=ROUND_FLOOR),
        odds,
    )


def quote_buy(
    complement_odds: Decimal,
    complement_limit: Decimal | None,
    cfg: PricingConfig,
    *,
    active: bool = True,
    existing_stake: Decimal = ZERO,
) -> Quote | NoQuote:
    """Buy (back) outcome X on the exchange, to be hedged by backing not-X at
    ``complement_odds``.

    ``p = floor_to_tick(1 - 1/complement_odds - edge)``, lowered to the highest on-grid price if
    above ``max_price``; no quote if it lies below ``min_price`` (raising it would give away edge).
    """
    if not active:
        return NoQuote(Reason.INACTIVE)
    odds = complement_odds
    if type(odds) is not Decimal or not odds.is_finite() or odds <= MIN_ODDS or odds >= MAX_ODDS:
        return NoQuote(check_odds(odds), str(odds))
    q_not = _UP.divide(ONE, odds)
    price = floor_to_tick(_DOWN.subtract(_DOWN.subtract(ONE, q_not), cfg.edge), cfg.tick)
    if price < cfg.lo:
        return NoQuote(Reason.PRICE_BELOW_MIN, f"{price} < {cfg.lo}")
    if price > cfg.hi:
        price = cfg.hi  # a lower buy price only adds edge
    size = _size(cfg, odds, complement_limit, existing_stake)
    if isinstance(size, NoQuote):
        return size
    return Quote(
        Side.BUY,
        price,
        size,
        q_not.quantize(_HEDGE_PER_CONTRACT_QUANTUM, rounding=ROUND_CEILING),
        _DOWN.subtract(_DOWN.subtract(ONE, q_not), price).quantize(_EDGE_QUANTUM, rounding=ROUND_FLOOR),
        odds,
    )


def to_decimal(value: object) -> Decimal | None:
    """A feed number as ``Decimal`` (``None`` for anything that is not a real number). Floats go
    through ``repr``, which is the shortest string that round-trips, so ``1.95`` stays ``1.95``."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None
