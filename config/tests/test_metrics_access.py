"""`/metrics` behind `METRICS_TOKEN` (a bearer token) and `METRICS_ALLOWED_NETWORKS`."""

import ipaddress

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_without_a_token_setting_metrics_stay_open(settings):
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 200


def test_with_metrics_token_only_the_bearer_token_gets_the_figures(settings):
    settings.METRICS_TOKEN = "scrape-me-0123456789"
    none = Client().get("/metrics")
    assert none.status_code == 401
    assert none["WWW-Authenticate"].startswith("Bearer")
    assert b"shelfwise_" not in none.content
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token scrape-me-0123456789").status_code == 401
    right = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789")
    assert right.status_code == 200
    assert b"shelfwise_" in right.content


def test_an_address_outside_the_allowed_networks_is_refused(settings):
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
