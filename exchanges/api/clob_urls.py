"""``/api/v1/clob/…``: the one path of the seed's SDK outside ``/api/v1/exchange/`` (amend by order id)."""

from django.urls import path

from . import views_trading as t

app_name = "exchange-clob"

urlpatterns = [
    path("orders/<str:order_id>", t.ClobAmendView.as_view(), name="amend"),
]
