from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.serializers import StrictInputSerializer
from tenants.services import user_token
from tenants.throttling import TokenByAddressThrottle, TokenByUsernameThrottle


@extend_schema_serializer(component_name="AuthToken")
class TokenObtainInputSerializer(StrictInputSerializer, AuthTokenSerializer):
    """A username and a password, and nothing else."""


class TokenObtainApi(APIView):
    """Exchange a username and password for the user's API token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenByAddressThrottle, TokenByUsernameThrottle]

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(
        request=TokenObtainInputSerializer,
        responses={200: OutputSerializer},
        auth=[],
        description="Throttled per username and per client address against password guessing: 429 with"
        " `Retry-After` (`AUTH_TOKEN_RATE_PER_USERNAME`, `AUTH_TOKEN_RATE_PER_ADDRESS`).",
    )
    def post(self, request):
        serializer = TokenObtainInputSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        token = user_token(user=serializer.validated_data["user"])
        return Response(self.OutputSerializer({"token": token.key}).data, status=status.HTTP_200_OK)
