from decimal import Decimal

from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from mmsite.api.renderers import FastJSONRenderer


def test_fast_renderer_writes_the_same_bytes_as_drf_for_api_payloads():
    body = {
        "data": [{"orderCents": Decimal("0.45"), "orderStake": Decimal("100.0000"), "settledAt": None, "back": True}],
        "total": 1,
        "message": gettext_lazy("Not found."),
        "big": Decimal("123456789012.3456"),
    }
    assert FastJSONRenderer().render(body) == JSONRenderer().render(body)


def test_decimals_are_json_numbers_not_strings():
    assert FastJSONRenderer().render({"p": Decimal("1.808")}) == b'{"p":1.808}'
