"""``/auth/…``: the login the seed's SDK uses (``EventTrader.from_credentials``)."""

from django.urls import path

from . import views_auth as v

app_name = "exchange-auth"

urlpatterns = [
    path("login", v.LoginView.as_view(), name="login"),
    path("refresh", v.RefreshView.as_view(), name="refresh"),
    path("logout", v.LogoutView.as_view(), name="logout"),
    path("me", v.MeView.as_view(), name="me"),
]
