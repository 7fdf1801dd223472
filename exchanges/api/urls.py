"""Routes of the exchange API, mounted at ``/api/v1/exchange/`` (seed 004's paths).

Fixed paths before ``<symbol>/orders/<order_id>``: ``orders/history``, ``orders/open``, ``orders/batch``.
TWAP, scale orders and the dead-man's switch (``exchanges/api/algos.py``) add their routes below.
"""

from django.urls import include, path

from . import views_market as m
from . import views_trading as t

app_name = "exchange"

urlpatterns = [
    path("pairs", m.PairsView.as_view(), name="pairs"),
    path("markets", m.MarketsView.as_view(), name="markets"),
    path("time", m.TimeView.as_view(), name="time"),
    path("fee-schedule", m.FeeScheduleView.as_view(), name="fee-schedule"),
    path("my-fees", t.MyFeesView.as_view(), name="my-fees"),
    path("orders/all", t.KillSwitchView.as_view(), name="kill-switch"),
    path("<str:symbol>/stats", m.StatsView.as_view(), name="stats"),
    path("<str:symbol>/chart", m.ChartView.as_view(), name="chart"),
    path("<str:symbol>/venues", m.VenuesView.as_view(), name="venues"),
    path("<str:symbol>/book", m.BookView.as_view(), name="book"),
    path("<str:symbol>/book/hybrid", m.HybridBookView.as_view(), name="book-hybrid"),
    path("<str:symbol>/bbo", m.BboView.as_view(), name="bbo"),
    path("<str:symbol>/trades", m.TradesView.as_view(), name="trades"),
    path("<str:symbol>/trades/mine", t.MyTradesView.as_view(), name="trades-mine"),
    path("<str:symbol>/ticker", m.TickerView.as_view(), name="ticker"),
    path("<str:symbol>/orders", t.OrdersView.as_view(), name="orders"),
    path("<str:symbol>/orders/history", t.OrderHistoryView.as_view(), name="orders-history"),
    path("<str:symbol>/orders/open", t.OpenOrdersView.as_view(), name="orders-open"),
    path("<str:symbol>/orders/batch", t.BatchOrdersView.as_view(), name="orders-batch"),
    path("<str:symbol>/orders/<str:order_id>", t.OrderDetailView.as_view(), name="order-detail"),
    path("<str:symbol>/balance", t.BalanceView.as_view(), name="balance"),
    path("<str:symbol>/withdraw", t.WithdrawView.as_view(), name="withdraw"),
    # TWAP, scale and the dead-man's switch (exchanges/api/algos.py).
    path("", include("exchanges.api.algos")),
]
