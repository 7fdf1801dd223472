from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from trading.api.base import ClientAPIView
from trading.api.serializers import ErrorSchema, MeSchema, iso


class MeView(ClientAPIView):
    @extend_schema(tags=["identity"], summary="Your client", responses={200: MeSchema, 401: ErrorSchema})
    def get(self, request):
        client = self.client
        return Response(
            {
                "client": client.name,
                "clientName": client.client_name,
                "bookmaker": client.bookmaker_code,
                "oddsFormat": client.odds_format,
                "apiKeyPrefix": self.principal.api_key.prefix,
                "createdAt": iso(client.created_at),
            }
        )
