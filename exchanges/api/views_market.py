"""Public market data: pairs, markets, stats, chart, venues, book, hybrid book, bbo, trades, ticker, time,
fee schedule. No authentication; rate-limited per IP (or per trader when one authenticates)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from exchanges.errors import Codes, ExchangeError
from exchanges.models import Market, MarketStatus
from exchanges.selectors import market_data as md
from exchanges.services import fees as fee_service
from exchanges.services.matching import now_us
from exchanges.services.orders import market_get

from . import schemas as s
from .base import PublicView
from .render import dec, public_trade_json

ERRORS = {400: s.ExchangeErrorSchema, 404: s.ExchangeErrorSchema, 429: s.ExchangeErrorSchema}
SYMBOL = OpenApiParameter("symbol", str, OpenApiParameter.PATH, description="pair symbol, e.g. vaix")
MODE = OpenApiParameter("mode", str, enum=["live", "paper"], description="live (default) or paper book")
DEPTH = OpenApiParameter("depth", int, description="price levels per side, 1-500 (default 30)")
LIMIT = OpenApiParameter("limit", int, description="max items, 1-500 (default 50)")
TAGS = ["exchange: market data"]


def pair_json(m: Market) -> dict:
    tier, _ = fee_service.tier_for(trader_tier="standard", volume=Decimal("0"))
    return {
        "symbol": m.symbol,
        "name": m.name or f"{m.base_asset}/{m.quote_asset}",
        "kind": m.kind,
        "base_symbol": m.base_asset,
        "quote_symbol": m.quote_asset,
        "tick_size": dec(m.tick_size),
        "lot_size": dec(m.lot_size),
        "min_order_size": dec(m.min_order_size),
        "min_price": dec(m.min_price),
        "max_price": dec(m.max_price),
        "maker_fee_bps": dec(m.maker_fee_bps if m.maker_fee_bps is not None else tier.maker_bps),
        "taker_fee_bps": dec(m.taker_fee_bps if m.taker_fee_bps is not None else tier.taker_bps),
        "status": m.status,
        "chain": m.chain,
        "base_address": m.base_address,
        "quote_address": m.quote_address,
        "fixture_ref": m.fixture_ref,
        "outcome_ref": m.outcome_ref,
    }


def _listed():
    return Market.objects.exclude(status=MarketStatus.CLOSED).order_by("symbol")


class PairsView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="All trading pairs",
        responses={200: s.ExchangePairSchema(many=True), 429: s.ExchangeErrorSchema},
    )
    def get(self, request):
        return Response([pair_json(m) for m in _listed()])


class MarketsView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="All markets with live stats",
        parameters=[MODE],
        responses={200: s.ExchangeMarketSchema(many=True), **ERRORS},
    )
    def get(self, request):
        mode = self.mode_param()
        out = []
        for m in _listed():
            st = md.stats_24h(market=m, mode=mode)
            liq = md.liquidity(market=m, mode=mode)
            row = pair_json(m)
            row.update(
                {
                    "price": dec(st["last"]),
                    "volume_24h": dec(st["volume"]),
                    "quote_volume_24h": dec(st["quote_volume"]),
                    "change_24h_pct": dec(st["change_pct"]),
                    "liquidity": dec(liq["bid_value"] + liq["ask_value"]),
                    "market_cap": dec(st["last"] * m.total_supply) if st["last"] and m.total_supply else None,
                }
            )
            out.append(row)
        return Response(out)


class StatsView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="Token statistics",
        parameters=[SYMBOL, MODE],
        responses={200: s.ExchangeStatsSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        st = md.stats_24h(market=m, mode=self.mode_param())
        return Response(
            {
                "symbol": m.symbol,
                "price": dec(st["last"]),
                "supply": dec(m.total_supply),
                "market_cap": dec(st["last"] * m.total_supply) if st["last"] and m.total_supply else None,
                "volume_24h": dec(st["volume"]),
                "quote_volume_24h": dec(st["quote_volume"]),
                "high_24h": dec(st["high"]),
                "low_24h": dec(st["low"]),
                "change_24h": dec(st["change"]),
                "change_24h_pct": dec(st["change_pct"]),
                "trades_24h": st["trade_count"],
            }
        )


class ChartView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="OHLC candles from trades",
        parameters=[
            SYMBOL,
            MODE,
            OpenApiParameter("interval", str, enum=list(md.INTERVALS), description="default 1h"),
            OpenApiParameter("limit", int, description="candles, 1-500 (default 100)"),
        ],
        responses={200: s.ExchangeChartSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        interval = request.query_params.get("interval") or "1h"
        if interval not in md.INTERVALS:
            raise ExchangeError(
                Codes.INVALID_PARAMETER, f"interval must be one of {', '.join(md.INTERVALS)}", parameter="interval"
            )
        limit = self.int_param("limit", 100)
        candles = md.candles(market=m, interval=interval, limit=limit, mode=self.mode_param())
        return Response(
            {
                "symbol": m.symbol,
                "interval": interval,
                "candles": [{k: (v if k == "timestamp" else dec(v)) for k, v in c.items()} for c in candles],
            }
        )


def _source_levels(m: Market) -> list[dict]:
    """Configured virtual depth sources: ``[{"venue", "chain", "bids": [(p, q)], "asks": [...]}]``."""
    out = []
    for src in m.depth_sources or []:
        if not isinstance(src, dict):
            continue
        bids, asks = [], []
        for level in src.get("levels") or []:
            try:
                side, price, qty = level
                p, q = Decimal(str(price)), Decimal(str(qty))
            except (TypeError, ValueError, ArithmeticError):
                continue
            if p > 0 and q > 0:
                (bids if side == "buy" else asks).append((p, q))
        out.append({"venue": str(src.get("venue", "amm")), "chain": src.get("chain"), "bids": bids, "asks": asks})
    return out


class VenuesView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="Liquidity by venue",
        parameters=[SYMBOL, MODE],
        responses={200: s.ExchangeVenuesSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        liq = md.liquidity(market=m, mode=self.mode_param())
        rows = [
            {
                "venue": "CLOB",
                "chain": None,
                "bid_liquidity": liq["bid_qty"],
                "ask_liquidity": liq["ask_qty"],
                "bid_value": liq["bid_value"],
                "ask_value": liq["ask_value"],
            }
        ]
        for src in _source_levels(m):
            rows.append(
                {
                    "venue": src["venue"],
                    "chain": src["chain"],
                    "bid_liquidity": sum((q for _, q in src["bids"]), Decimal("0")),
                    "ask_liquidity": sum((q for _, q in src["asks"]), Decimal("0")),
                    "bid_value": sum((p * q for p, q in src["bids"]), Decimal("0")),
                    "ask_value": sum((p * q for p, q in src["asks"]), Decimal("0")),
                }
            )
        total = sum((r["bid_value"] + r["ask_value"] for r in rows), Decimal("0"))
        for r in rows:
            share = (r["bid_value"] + r["ask_value"]) / total * 100 if total else Decimal("0")
            r["share_pct"] = dec(share.quantize(Decimal("0.01")))
            for k in ("bid_liquidity", "ask_liquidity", "bid_value", "ask_value"):
                r[k] = dec(r[k])
        return Response({"symbol": m.symbol, "venues": rows})


class BookView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="CLOB-only order book",
        parameters=[SYMBOL, DEPTH, MODE],
        responses={200: s.ExchangeBookSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        mode = self.mode_param()
        snap = md.book_snapshot(symbol=m, mode=mode, depth=self.int_param("depth", 30))
        return Response(
            {
                "symbol": m.symbol,
                "mode": mode,
                "sequence": snap["sequence"],
                "bids": [[dec(p), dec(q)] for p, q in snap["bids"]],
                "asks": [[dec(p), dec(q)] for p, q in snap["asks"]],
                "timestamp": timezone.now(),
            }
        )


def _merge(clob: list, sources: list[list], *, descending: bool, depth: int) -> list[dict]:
    levels: dict[Decimal, dict] = {}
    for p, q in clob:
        levels[p] = {"price": p, "clob": q, "amm": Decimal("0")}
    for src in sources:
        for p, q in src:
            lvl = levels.setdefault(p, {"price": p, "clob": Decimal("0"), "amm": Decimal("0")})
            lvl["amm"] += q
    out = []
    for p in sorted(levels, reverse=descending)[:depth]:
        lvl = levels[p]
        source = "clob+amm" if lvl["clob"] and lvl["amm"] else ("clob" if lvl["clob"] else "amm")
        out.append(
            {
                "price": dec(p),
                "size": dec(lvl["clob"] + lvl["amm"]),
                "clob_size": dec(lvl["clob"]),
                "amm_size": dec(lvl["amm"]),
                "source": source,
            }
        )
    return out


class HybridBookView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="Hybrid order book: CLOB plus configured virtual depth sources",
        description="With no depth source configured for the pair this is the CLOB, and every level says "
        "`source: clob`.",
        parameters=[SYMBOL, OpenApiParameter("depth", int, description="minimum levels per side (default 30)"), MODE],
        responses={200: s.ExchangeHybridBookSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        mode = self.mode_param()
        depth = self.int_param("depth", 30)
        snap = md.book_snapshot(symbol=m, mode=mode, depth=depth)
        sources = _source_levels(m) if mode == "live" else []
        return Response(
            {
                "symbol": m.symbol,
                "mode": mode,
                "sequence": snap["sequence"],
                "sources": ["CLOB", *[src["venue"] for src in sources]],
                "amm_configured": bool(sources),
                "bids": _merge(snap["bids"], [src["bids"] for src in sources], descending=True, depth=depth),
                "asks": _merge(snap["asks"], [src["asks"] for src in sources], descending=False, depth=depth),
                "timestamp": timezone.now(),
            }
        )


class BboView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="Best bid and offer",
        parameters=[SYMBOL, MODE],
        responses={200: s.ExchangeBboSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        b = md.bbo(symbol=m, mode=self.mode_param())
        bid, ask = b["best_bid"], b["best_ask"]
        return Response(
            {
                "symbol": m.symbol,
                "best_bid": dec(bid),
                "best_bid_size": dec(b["best_bid_size"]),
                "best_ask": dec(ask),
                "best_ask_size": dec(b["best_ask_size"]),
                "spread": dec(ask - bid) if bid is not None and ask is not None else None,
                "mid": dec((ask + bid) / 2) if bid is not None and ask is not None else None,
                "sequence": b["sequence"],
                "timestamp": timezone.now(),
            }
        )


class TradesView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="Recent trades (time and sales)",
        parameters=[SYMBOL, LIMIT, MODE],
        responses={200: s.ExchangeTradesSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        trades = md.recent_trades(market=m, mode=self.mode_param(), limit=self.int_param("limit", 50))
        return Response({"symbol": m.symbol, "trades": [public_trade_json(t) for t in trades]})


class TickerView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="24-hour ticker",
        parameters=[SYMBOL, MODE],
        responses={200: s.ExchangeTickerSchema, **ERRORS},
    )
    def get(self, request, symbol):
        m = market_get(symbol=symbol)
        mode = self.mode_param()
        st = md.stats_24h(market=m, mode=mode)
        b = md.bbo(symbol=m, mode=mode)
        return Response(
            {
                "symbol": m.symbol,
                "last_price": dec(st["last"]),
                "open_24h": dec(st["open"]),
                "high_24h": dec(st["high"]),
                "low_24h": dec(st["low"]),
                "volume_24h": dec(st["volume"]),
                "quote_volume_24h": dec(st["quote_volume"]),
                "change_24h": dec(st["change"]),
                "change_24h_pct": dec(st["change_pct"]),
                "best_bid": dec(b["best_bid"]),
                "best_ask": dec(b["best_ask"]),
                "timestamp": timezone.now(),
            }
        )


class TimeView(PublicView):
    @extend_schema(tags=TAGS, summary="Server time", responses={200: s.ExchangeTimeSchema, 429: s.ExchangeErrorSchema})
    def get(self, request):
        us = now_us()
        return Response({"server_time": timezone.now(), "timestamp": us // 1000, "timestamp_us": us})


def tier_json(t: fee_service.TierView) -> dict:
    return {
        "name": t.name,
        "min_volume_30d": dec(t.min_volume_30d),
        "trader_tier": t.trader_tier or None,
        "maker_fee_bps": dec(t.maker_bps),
        "taker_fee_bps": dec(t.taker_bps),
    }


class FeeScheduleView(PublicView):
    @extend_schema(
        tags=TAGS,
        summary="Fee schedule (volume tiers and the market makers' tier)",
        responses={200: s.ExchangeFeeScheduleSchema, 429: s.ExchangeErrorSchema},
    )
    def get(self, request):
        return Response({"tiers": [tier_json(t) for t in fee_service.tiers()]})
