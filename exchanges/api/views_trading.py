"""Trading and account endpoints (authenticated): place, get, cancel, amend, history, batch place and
cancel, open orders, my trades, balance, withdraw, cancel all, kill switch, my fees."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from exchanges.errors import Codes, ExchangeError
from exchanges.selectors import accounts as acc
from exchanges.services import fees as fee_service
from exchanges.services import orders as svc
from exchanges.services.withdrawals import withdrawal_request

from . import schemas as s
from .base import MAX_OFFSET, TraderView
from .render import batch_json, dec, fill_json, order_json, ts
from .throttling import AuthenticatedRateThrottle, orders_throttle, request_window_count

ERRORS = {
    400: s.ExchangeErrorSchema,
    401: s.ExchangeErrorSchema,
    404: s.ExchangeErrorSchema,
    409: s.ExchangeErrorSchema,
    429: s.ExchangeErrorSchema,
}
SYMBOL = OpenApiParameter("symbol", str, OpenApiParameter.PATH, description="pair symbol, e.g. vaix")
ORDER_ID = OpenApiParameter("order_id", str, OpenApiParameter.PATH, description="ord_…")
MODE = OpenApiParameter("mode", str, enum=["live", "paper"], description="live (default) or paper")
MODE_ANY = OpenApiParameter("mode", str, enum=["live", "paper"], description="live or paper (default: both)")
TAGS = ["exchange: trading"]
ACCOUNT_TAGS = ["exchange: account"]
BATCH_MAX = 10
#: The body fields of an order, and the service option each maps to.
ORDER_FIELDS = {"side", "quantity", "price", "order_type", "mode", "symbol"}
ORDER_OPTIONS = {"stop_price", "display_qty", "expire_at", "time_in_force_ms", "stp_mode", "client_order_id"}


def _place(trader, symbol: str, body: Any, default_mode: str | None = None):
    return svc.order_place(**place_args(trader, symbol, body, default_mode))


def place_args(trader, symbol: str, body: Any, default_mode: str | None = None) -> dict[str, Any]:
    """The service's keyword arguments for one order body (the order gateway uses these too)."""
    if not isinstance(body, dict):
        raise ExchangeError(Codes.INVALID_PARAMETER, "an order must be a JSON object")
    unknown = set(body) - ORDER_FIELDS - ORDER_OPTIONS
    if unknown:
        name = sorted(unknown)[0]
        raise ExchangeError(Codes.INVALID_PARAMETER, f"unknown field {name!r}", parameter=name)
    if "side" not in body:
        raise ExchangeError(Codes.INVALID_SIDE, "side is required (buy or sell)", parameter="side")
    if "quantity" not in body:
        raise ExchangeError(Codes.INVALID_QUANTITY, "quantity is required", parameter="quantity")
    order_type = body.get("order_type", "limit")
    price = body.get("price")
    if order_type in ("market", "stop_market"):
        price = None  # "ignored for market" (the SDK sends "0")
    options = {k: body[k] for k in ORDER_OPTIONS if k in body and body[k] is not None}
    return dict(
        trader=trader,
        symbol=symbol,
        side=body["side"],
        type=order_type,
        quantity=body["quantity"],
        price=price,
        mode=body["mode"] if body.get("mode") is not None else (default_mode or "live"),
        **options,
    )


def _placed_json(order) -> dict:
    body = order_json(order)
    body["fills"] = (
        [fill_json(t, order.trader_id) for t in acc.taker_fills(order=order)] if order.filled_quantity else []
    )
    return body


class OrdersView(TraderView):
    def check_throttles(self, request):
        # A placement's own per-trader request count goes with its order counts: one round trip
        # (``orders_throttle(request=...)``); counted alone if the request fails before that.
        if request.method == "POST" and self.throttle_classes == [AuthenticatedRateThrottle]:
            self._request_window = AuthenticatedRateThrottle().deferred(request, self)
            if self._request_window is not None:
                return
        super().check_throttles(request)

    def handle_exception(self, exc):
        pending = getattr(self, "_request_window", None)
        if pending is not None and not pending.counted:
            try:
                request_window_count(pending)
            except exceptions.Throttled as throttled:  # over the request limit: that refusal wins
                exc = throttled
        return super().handle_exception(exc)

    @extend_schema(
        tags=TAGS,
        summary="Place an order",
        parameters=[SYMBOL],
        request=s.ExchangePlaceOrderRequest,
        responses={201: s.ExchangePlacedOrderSchema, **ERRORS},
    )
    def post(self, request, symbol):
        body = self.body()
        pending = getattr(self, "_request_window", None)
        orders_throttle(trader=self.trader, symbol=symbol.lower(), count=1, request=pending)
        order = _place(self.trader, symbol, body)
        return Response(_placed_json(order), status=201)

    @extend_schema(
        tags=TAGS,
        summary="Cancel all open orders on this pair",
        parameters=[SYMBOL, MODE, OpenApiParameter("side", str, enum=["buy", "sell"])],
        request=None,
        responses={200: s.ExchangeCancelAllSchema, **ERRORS},
    )
    def delete(self, request, symbol):
        side = request.query_params.get("side") or None
        orders = svc.orders_cancel_all(trader=self.trader, symbol=symbol, mode=self.mode_param(), side=side)
        return Response({"cancelled": len(orders), "orders": [order_json(o) for o in orders]})


class OrderDetailView(TraderView):
    def _order(self, symbol: str, order_id: str, mode: str | None):
        market = svc.market_get(symbol=symbol)
        order = svc._order_for(self.trader, order_id, mode)
        if order.market_id != market.pk:
            raise svc.unknown_order(order_id)
        return order

    @extend_schema(
        tags=TAGS,
        summary="Order status and fills",
        parameters=[SYMBOL, ORDER_ID, MODE_ANY],
        responses={200: s.ExchangePlacedOrderSchema, **ERRORS},
    )
    def get(self, request, symbol, order_id):
        return Response(_placed_json(self._order(symbol, order_id, self.mode_param(None))))

    @extend_schema(
        tags=TAGS,
        summary="Cancel an order",
        parameters=[SYMBOL, ORDER_ID, MODE],
        request=None,
        responses={200: s.ExchangeOrderSchema, **ERRORS},
    )
    def delete(self, request, symbol, order_id):
        order = svc.order_cancel(trader=self.trader, order_id=order_id, mode=self.mode_param(None), symbol=symbol)
        return Response(order_json(order))

    @extend_schema(
        tags=TAGS,
        summary="Amend an order (a price change loses time priority, a size decrease keeps it)",
        parameters=[SYMBOL, ORDER_ID],
        request=s.ExchangeAmendRequest,
        responses={200: s.ExchangeOrderSchema, **ERRORS},
    )
    def patch(self, request, symbol, order_id):
        body = self.body()
        unknown = set(body) - {"price", "quantity", "mode"}
        if unknown:
            name = sorted(unknown)[0]
            raise ExchangeError(Codes.INVALID_PARAMETER, f"unknown field {name!r}", parameter=name)
        order = self._order(symbol, order_id, None)
        orders_throttle(trader=self.trader, symbol=order.market.symbol, count=1)
        amended = svc.order_amend(
            trader=self.trader, order_id=order.order_id, price=body.get("price"), quantity=body.get("quantity")
        )
        return Response(order_json(amended))


class OrderHistoryView(TraderView):
    @extend_schema(
        tags=ACCOUNT_TAGS,
        summary="Order history",
        parameters=[
            SYMBOL,
            OpenApiParameter("limit", int, description="1-500 (default 50)"),
            OpenApiParameter("offset", int, description="0-1000000 (default 0)"),
            MODE_ANY,
        ],
        responses={200: s.ExchangeOrderHistorySchema, **ERRORS},
    )
    def get(self, request, symbol):
        market = svc.market_get(symbol=symbol)
        limit = self.int_param("limit", 50)
        offset = self.int_param("offset", 0, low=0, high=MAX_OFFSET)
        rows, total = acc.order_history(
            trader=self.trader, market=market, mode=self.mode_param(None), limit=limit, offset=offset
        )
        return Response({"orders": [order_json(o) for o in rows], "total": total, "limit": limit, "offset": offset})


class OpenOrdersView(TraderView):
    @extend_schema(
        tags=ACCOUNT_TAGS,
        summary="Open orders",
        parameters=[SYMBOL, MODE],
        responses={200: s.ExchangeOrderListSchema, **ERRORS},
    )
    def get(self, request, symbol):
        market = svc.market_get(symbol=symbol)
        rows = acc.open_orders(trader=self.trader, market=market, mode=self.mode_param())
        return Response({"orders": [order_json(o) for o in rows]})


class BatchOrdersView(TraderView):
    @extend_schema(
        tags=TAGS,
        summary="Place up to 10 orders (each on its own: one refusal does not stop the others)",
        parameters=[SYMBOL],
        request=s.ExchangeBatchPlaceRequest,
        responses={200: s.ExchangeBatchResultSchema, **ERRORS},
    )
    def post(self, request, symbol):
        data = request.data
        orders = data if isinstance(data, list) else (data.get("orders") if isinstance(data, dict) else None)
        default_mode = data.get("mode") if isinstance(data, dict) else None
        if default_mode is not None:
            default_mode = svc.mode_check(default_mode)
        if not isinstance(orders, list) or not orders:
            raise ExchangeError(Codes.INVALID_PARAMETER, "orders must be a non-empty array", parameter="orders")
        if len(orders) > BATCH_MAX:
            raise ExchangeError(
                Codes.BATCH_TOO_LARGE, f"at most {BATCH_MAX} orders per batch, got {len(orders)}", parameter="orders"
            )
        svc.market_get(symbol=symbol)
        orders_throttle(trader=self.trader, symbol=symbol.lower(), count=len(orders))
        # Each order validated on its own, then all of them placed as one transaction on the book.
        outcome: list[Any] = []
        specs = []
        for body in orders:
            try:
                specs.append(svc.place_prepare(**place_args(self.trader, symbol, body, default_mode)))
                outcome.append(len(specs) - 1)
            except ExchangeError as exc:
                outcome.append(exc)
        placed = svc.orders_place_batch(specs=specs)
        return Response(batch_json([placed[o] if isinstance(o, int) else o for o in outcome]))

    @extend_schema(
        tags=TAGS,
        summary="Cancel up to 10 orders by id",
        parameters=[SYMBOL],
        request=s.ExchangeBatchCancelRequest,
        responses={200: s.ExchangeBatchResultSchema, **ERRORS},
    )
    def delete(self, request, symbol):
        body = self.body()
        ids = body.get("order_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ExchangeError(Codes.INVALID_PARAMETER, "order_ids must be a non-empty array of strings")
        if len(ids) > BATCH_MAX:
            raise ExchangeError(Codes.BATCH_TOO_LARGE, f"at most {BATCH_MAX} order ids per batch, got {len(ids)}")
        market = svc.market_get(symbol=symbol)
        mode = body.get("mode")
        if mode is not None:
            mode = svc.mode_check(mode)
        done = svc.orders_cancel_batch(trader=self.trader, order_ids=ids, market=market, mode=mode)
        return Response(batch_json(done, ids))


class MyTradesView(TraderView):
    @extend_schema(
        tags=ACCOUNT_TAGS,
        summary="My fills on this pair, newest first",
        parameters=[SYMBOL, OpenApiParameter("limit", int, description="1-500 (default 50)"), MODE_ANY],
        responses={200: s.ExchangeFillListSchema, **ERRORS},
    )
    def get(self, request, symbol):
        market = svc.market_get(symbol=symbol)
        trades = acc.my_trades(
            trader=self.trader, market=market, mode=self.mode_param(None), limit=self.int_param("limit", 50)
        )
        return Response({"trades": [fill_json(t, self.trader) for t in trades]})


class BalanceView(TraderView):
    @extend_schema(
        tags=ACCOUNT_TAGS,
        summary="Balances of the pair's base and quote",
        parameters=[SYMBOL, MODE],
        responses={200: s.ExchangeBalanceSchema, **ERRORS},
    )
    def get(self, request, symbol):
        market = svc.market_get(symbol=symbol)
        mode = self.mode_param()
        b = acc.balances(trader=self.trader, assets=[market.base_asset, market.quote_asset], mode=mode)
        return Response(
            {
                "symbol": market.symbol,
                "mode": mode,
                "base_asset": market.base_asset,
                "quote_asset": market.quote_asset,
                "base_available": dec(b[market.base_asset]["available"]),
                "quote_available": dec(b[market.quote_asset]["available"]),
                "balances": [
                    {
                        "asset": asset,
                        "total": dec(v["total"]),
                        "available": dec(v["available"]),
                        "locked": dec(v["locked"]),
                    }
                    for asset, v in b.items()
                ],
            }
        )


class WithdrawView(TraderView):
    @extend_schema(
        tags=ACCOUNT_TAGS,
        summary="Withdraw tokens (held now, handed to the brokerage's withdrawal flow)",
        parameters=[SYMBOL],
        request=s.ExchangeWithdrawRequest,
        responses={202: s.ExchangeWithdrawalSchema, **ERRORS},
    )
    def post(self, request, symbol):
        body = self.body()
        market = svc.market_get(symbol=symbol)
        if "amount" not in body:
            raise ExchangeError(Codes.INVALID_AMOUNT, "amount is required", parameter="amount")
        w = withdrawal_request(
            trader=self.trader,
            market=market,
            amount=body.get("amount"),
            destination=body.get("destination"),
            asset=body.get("asset"),
            mode=body["mode"] if body.get("mode") is not None else "live",
        )
        return Response(
            {
                "withdrawal_id": w.withdrawal_id,
                "status": w.status,
                "asset": w.asset,
                "amount": dec(w.amount),
                "destination": w.destination,
                "mode": w.mode,
                "created_at": ts(w.created_at),
            },
            status=202,
        )


class KillSwitchView(TraderView):
    @extend_schema(
        tags=TAGS,
        summary="Kill switch: cancel every open order on every pair",
        parameters=[MODE_ANY],
        request=None,
        responses={200: s.ExchangeKillSwitchSchema, **ERRORS},
    )
    def delete(self, request):
        orders = svc.orders_kill_switch(trader=self.trader, mode=self.mode_param(None))
        return Response({"cancelled": len(orders), "order_ids": [o.order_id for o in orders]})


class MyFeesView(TraderView):
    @extend_schema(
        tags=ACCOUNT_TAGS,
        summary="My fee tier, 30-day volume and the next tier",
        parameters=[MODE],
        responses={200: s.ExchangeMyFeesSchema, **ERRORS},
    )
    def get(self, request):
        mode = self.mode_param()
        volume = fee_service.volume_30d(trader_id=self.trader.pk, mode=mode)
        tier, nxt = fee_service.tier_for(trader_tier=self.trader.tier, volume=volume)
        return Response(
            {
                "tier": tier.name,
                "maker_fee_bps": dec(tier.maker_bps),
                "taker_fee_bps": dec(tier.taker_bps),
                "volume_30d": dec(volume),
                "next_tier": nxt.name if nxt else None,
                "next_tier_volume": dec(nxt.min_volume_30d) if nxt else None,
            }
        )


class ClobAmendView(TraderView):
    """``PATCH /api/v1/clob/orders/{order_id}``: the path the seed's SDK (``clob.amend_order``) uses."""

    @extend_schema(
        tags=TAGS,
        summary="Amend an order by id (the SDK's path; same as PATCH /{symbol}/orders/{order_id})",
        parameters=[ORDER_ID],
        request=s.ExchangeAmendRequest,
        responses={200: s.ExchangeOrderSchema, **ERRORS},
    )
    def patch(self, request, order_id):
        body = self.body()
        unknown = set(body) - {"price", "quantity", "mode"}
        if unknown:
            name = sorted(unknown)[0]
            raise ExchangeError(Codes.INVALID_PARAMETER, f"unknown field {name!r}", parameter=name)
        order = svc._order_for(self.trader, order_id, None)
        orders_throttle(trader=self.trader, symbol=order.market.symbol, count=1)
        amended = svc.order_amend(
            trader=self.trader, order_id=order.order_id, price=body.get("price"), quantity=body.get("quantity")
        )
        return Response(order_json(amended))
