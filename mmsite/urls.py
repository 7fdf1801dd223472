from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

handler404 = "mmsite.api.errors.json_not_found"
handler500 = "mmsite.api.errors.json_server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # the brokerage: /api/v1/broker/…, /api/auth/sso…, /trade/, /widget/ (before the MM API's /api/v1/)
    path("", include("brokers.urls")),
    # the house exchange: /api/v1/exchange/… and the traders' login /auth/… (before the MM API's /api/v1/)
    path("api/v1/exchange/", include("exchanges.api.urls")),
    path("auth/", include("exchanges.api.auth_urls")),
    path("api/v1/clob/", include("exchanges.api.clob_urls")),
    path("api/v1/", include("trading.api.urls")),
]
