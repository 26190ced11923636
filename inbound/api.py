"""The distributor's side of the API (docs/api.md): its signing secret (staff), and the signed
webhook by which it sends shipment notices (no token: the signature is the credential)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.serializers import refuse_any_input
from inbound.models import InboxMessage
from inbound.services import (
    NoticeSerializer,
    distributor_secret_rotate,
    message_id_check,
    notice_parse,
    notice_receive,
    signed_tenant,
)
from tenants.permissions import IsTenantStaff
from tenants.scoping import TenantApiMixin

# One answer for every refusal: an unknown bookstore and a bad signature cannot be told apart.
UNSIGNED = {"detail": "The signature does not verify.", "code": "authentication_failed"}
# One answer for every notice taken: applied, parked or seen before, nothing about any order leaks.
ACCEPTED = {"status": "accepted"}


@extend_schema_serializer(component_name="DistributorSecret")
class SecretOutputSerializer(serializers.Serializer):
    secret = serializers.CharField()


class DistributorSecretApi(TenantApiMixin, APIView):
    """`POST inbound/distributor/secret` (staff): a new secret for the distributor; the previous
    one keeps verifying for 24 hours."""

    permission_classes = [IsTenantStaff]

    @extend_schema(
        operation_id="inbound_distributor_secret_rotate",
        description=(
            "A new secret (`whsec_…`) for the distributor to sign this bookstore's shipment notices with, "
            "shown this once. Asking again rotates it: the previous secret keeps verifying for 24 hours."
        ),
        request=None,
        responses={201: SecretOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        refuse_any_input(request.data)
        secret = distributor_secret_rotate(tenant=self.tenant)
        return Response({"secret": secret}, status=status.HTTP_201_CREATED)


@extend_schema_serializer(component_name="ShipmentNoticeAccepted")
class AcceptedOutputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["accepted"])


class DistributorNoticeApi(APIView):
    """`POST inbound/{tenant_slug}/distributor/`: one shipment notice, signed with Standard Webhooks."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="inbound_distributor_notice",
        description=(
            "A shipment notice from the distributor, signed with Standard Webhooks (`webhook-id`, "
            "`webhook-timestamp`, `webhook-signature`) with the bookstore's distributor secret; `webhook-id` is "
            "the message id. 202 when accepted: applied, parked for staff with its reason, or seen before (not "
            "applied again). 401 for a bad or missing signature or an unknown bookstore alike; 400 for a body "
            "that is not a notice."
        ),
        auth=[],
        request=NoticeSerializer,
        parameters=[
            OpenApiParameter("webhook-id", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("webhook-timestamp", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("webhook-signature", str, OpenApiParameter.HEADER, required=True),
        ],
        responses={
            202: AcceptedOutputSerializer,
            400: OpenApiResponse(description="The body is not a shipment notice."),
            401: OpenApiResponse(description="A bad or missing signature, or an unknown bookstore."),
        },
    )
    def post(self, request: Request, tenant_slug: str) -> Response:
        body = request.body
        tenant = signed_tenant(tenant_slug=tenant_slug, body=body, headers=dict(request.headers))
        if tenant is None:
            return Response(UNSIGNED, status=status.HTTP_401_UNAUTHORIZED)
        message_id = message_id_check(request.headers.get("webhook-id"))
        notice = notice_parse(body)
        notice_receive(
            tenant=tenant, message_id=message_id, source=InboxMessage.Source.WEBHOOK, notice=notice, body=body
        )
        return Response(ACCEPTED, status=status.HTTP_202_ACCEPTED)
