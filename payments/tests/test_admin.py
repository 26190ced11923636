"""The admin: read-only, scoped to the staff member's bookstore, and never showing a full token."""

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse

from payments.gateways import SimulatedGateway
from payments.models import Payment, SimulatedCharge
from payments.tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_TOKEN = "tok_1Nv0FGsecretcard4242"


def test_staff_see_only_their_bookstores_payments(staff_admin, tenant, other_tenant):
    own = PaymentFactory(tenant=tenant)
    foreign = PaymentFactory(tenant=other_tenant)
    response = staff_admin.get(reverse("admin:payments_payment_changelist"))
    assert response.status_code == 200
    assert str(own.order_id) in response.text
    assert str(foreign.order_id) not in response.text

    foreign_page = staff_admin.get(reverse("admin:payments_payment_change", args=[foreign.pk]))
    assert foreign_page.status_code == 302  # "does not exist", back to the index


def test_the_payment_token_is_masked(staff_admin, tenant):
    payment = PaymentFactory(tenant=tenant, payment_token=SECRET_TOKEN)
    response = staff_admin.get(reverse("admin:payments_payment_change", args=[payment.pk]))
    assert response.status_code == 200
    assert "••••4242" in response.text
    assert SECRET_TOKEN not in response.text
    assert "secretcard" not in response.text


def test_payments_are_read_only(staff_admin, tenant):
    payment = PaymentFactory(tenant=tenant)
    response = staff_admin.post(
        reverse("admin:payments_payment_change", args=[payment.pk]), {"status": Payment.Status.REFUNDED}
    )
    assert response.status_code == 403
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert staff_admin.get(reverse("admin:payments_payment_add")).status_code == 403
    assert staff_admin.post(reverse("admin:payments_payment_delete", args=[payment.pk])).status_code == 403


def test_search_by_order_id(staff_admin, tenant):
    wanted, other = PaymentFactory(tenant=tenant), PaymentFactory(tenant=tenant)
    response = staff_admin.get(reverse("admin:payments_payment_changelist"), {"q": str(wanted.order_id)})
    assert str(wanted.order_id) in response.text
    assert str(other.order_id) not in response.text


def test_the_providers_ledger_is_for_operators_only(staff_admin, operator_admin):
    SimulatedGateway(delay=0, lost_responses=0).capture(
        amount=Decimal("10.00"), currency="USD", token=SECRET_TOKEN, idempotency_key="k"
    )
    charge = SimulatedCharge.objects.get()
    assert staff_admin.get(reverse("admin:payments_simulatedcharge_changelist")).status_code == 403

    listing = operator_admin.get(reverse("admin:payments_simulatedcharge_changelist"))
    assert listing.status_code == 200
    assert charge.reference in listing.text
    page = operator_admin.get(reverse("admin:payments_simulatedcharge_change", args=[charge.pk]))
    assert page.status_code == 200
    assert SECRET_TOKEN not in page.text


def test_an_orders_page_shows_its_payment(rf, staff, tenant):
    from payments.admin import order_payment

    payment = Payment.objects.create(
        tenant=tenant,
        order_id=uuid.uuid4(),
        amount=Decimal("25.00"),
        currency="USD",
        status=Payment.Status.DECLINED,
        provider_reference="sim_ch_123",
        failure_reason="card declined\ncode 51",
    )
    request = rf.get("/admin/")
    request.user = staff
    html = order_payment(request, tenant_id=tenant.id, aggregate_id=payment.order_id)
    assert "sim_ch_123" in html
    assert ">25.00 USD<" in html
    assert "card declined" in html
    assert "code 51" not in html  # the first line of the failure
    assert f"/admin/payments/payment/{payment.pk}/change/" in html
    other = order_payment(request, tenant_id=uuid.uuid4(), aggregate_id=payment.order_id)
    assert "sim_ch_123" not in other
