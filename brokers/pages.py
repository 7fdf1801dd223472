"""The trading page SSO lands on, and a demo page embedding the widget."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET


@require_GET
def trade_page(request):
    """Moves the session token from the URL fragment into ``localStorage["auth_token"]`` and trades."""
    return render(request, "brokers/trade.html", {"default_symbol": request.GET.get("symbol", "")})


@require_GET
@xframe_options_exempt
def widget_demo(request):
    """A page with the embed code, to see the widget working (``?broker=<uuid>&sso_token=<jwt>``)."""
    return render(
        request,
        "brokers/widget_demo.html",
        {"broker_uid": request.GET.get("broker", ""), "sso_token": request.GET.get("sso_token", "")},
    )
