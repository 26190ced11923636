from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.serializers import StrictInputSerializer, refuse_any_input
from tenants.auth import TenantTokenAuthentication
from tenants.services import token_issue, token_revoke, token_rotate
from tenants.throttling import TokenByAddressThrottle, TokenByUsernameThrottle


@extend_schema_serializer(component_name="AuthToken")
class TokenObtainInputSerializer(StrictInputSerializer, AuthTokenSerializer):
    """A username and a password, and nothing else."""


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()


class TokenObtainApi(APIView):
    """Exchange a username and password for a new API token (shown this once)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenByAddressThrottle, TokenByUsernameThrottle]

    @extend_schema(
        request=TokenObtainInputSerializer,
        responses={200: TokenOutputSerializer},
        auth=[],
        description="A new token each time, expiring after `API_TOKEN_TTL_DAYS`. Throttled per username and"
        " per client address against password guessing: 429 with `Retry-After` (`AUTH_TOKEN_RATE_PER_USERNAME`,"
        " `AUTH_TOKEN_RATE_PER_ADDRESS`).",
    )
    def post(self, request):
        serializer = TokenObtainInputSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        issued = token_issue(user=serializer.validated_data["user"])
        return Response(TokenOutputSerializer({"token": issued.key}).data, status=status.HTTP_200_OK)


class TokenRotateApi(APIView):
    """A new token for the caller; the token this request used is revoked."""

    authentication_classes = [TenantTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_token_rotate", request=None, responses={200: TokenOutputSerializer})
    def post(self, request):
        refuse_any_input(request.data)
        issued = token_rotate(token=request.auth)
        return Response(TokenOutputSerializer({"token": issued.key}).data, status=status.HTTP_200_OK)


class TokenRevokeApi(APIView):
    """Revoke the token this request used (a log-out): from now on it is a 401."""

    authentication_classes = [TenantTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_token_revoke", request=None, responses={204: None})
    def post(self, request):
        refuse_any_input(request.data)
        token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)
