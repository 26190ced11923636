"""Factories for read-model rows, for tests that start from given figures (drift, dashboards)."""

import factory

from analytics.models import Generation


class GenerationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Generation
        django_get_or_create = ("projection", "target")

    projection = "analytics.sales"
    target = "live"
