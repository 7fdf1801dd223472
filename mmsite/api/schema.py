"""drf-spectacular customisation shared by every API family."""

import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as _AutoSchema


class AutoSchema(_AutoSchema):
    def get_operation_id(self) -> str:
        """``get_api_v1_orders_order_id``: unique per method and path, stable, readable.
        (The default names both ``/orders`` and ``/orders/{id}`` of an APIView ``retrieve``.)"""
        slug = re.sub(r"[^a-zA-Z0-9]+", "_", self.path).strip("_")
        return f"{self.method.lower()}_{slug}"


class ClientApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "trading.api.authentication.ApiKeyAuthentication"
    name = "ClientApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "MM client API key (mm_<prefix>_<secret>), issued by `manage.py create_client`",
        }
