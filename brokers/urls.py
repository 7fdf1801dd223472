"""Non-API routes of the brokerage: SSO, the trading page and the widget demo (included at the root)."""

from django.urls import include, path

from brokers import pages
from brokers.api.sso import SSORedirectView, SSOTokenView

urlpatterns = [
    path("api/auth/sso", SSORedirectView.as_view(), name="sso"),
    path("api/auth/sso/token", SSOTokenView.as_view(), name="sso-token"),
    path("api/v1/broker/", include("brokers.api.urls")),
    path("trade/", pages.trade_page, name="trade"),
    path("widget/", pages.widget_demo, name="widget-demo"),
]
