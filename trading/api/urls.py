"""Routes of the MM client API (``/api/v1/``).

Each view module owns its routes (``urlpatterns`` in the module). Order matters where paths
overlap: fixed paths such as ``orders/open`` and ``orders/cancel-all`` come before ``orders/<id>``.
"""

from django.urls import path

from .views import accounts, bets, controls, fixtures, positions
from .views.me import MeView
from .views.orders import OpenOrderListView, OrderDetailView, OrderListView, OrderSummaryView

app_name = "mm"

urlpatterns = [
    path("me", MeView.as_view(), name="me"),
    *controls.urlpatterns,  # trading/*, orders/cancel-all, orders/<id>/cancel
    *positions.urlpatterns,  # positions, positions/summary, pnl
    *accounts.urlpatterns,  # accounts
    *fixtures.urlpatterns,  # fixtures, fixtures/<id>
    *bets.urlpatterns,  # bets, bets/summary, bets/<id>
    path("orders", OrderListView.as_view(), name="orders"),
    path("orders/open", OpenOrderListView.as_view(), name="orders-open"),
    path("orders/summary", OrderSummaryView.as_view(), name="orders-summary"),
    path("orders/<str:order_id>", OrderDetailView.as_view(), name="order-detail"),
]
