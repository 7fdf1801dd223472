"""Base view of the MM client API: key auth, per-client throttle, the ``mm`` error style."""

from rest_framework.views import APIView

from trading.models import Client

from .authentication import ApiKeyAuthentication, ClientPrincipal, IsClient
from .throttling import ClientRateThrottle


class ClientAPIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsClient]
    throttle_classes = [ClientRateThrottle]
    error_style = "mm"

    @property
    def principal(self) -> ClientPrincipal:
        return self.request.user

    @property
    def client(self) -> Client:
        return self.request.user.client
