from django.urls import path

from analytics.api import DashboardApi, EventFeedApi, OrderTimelineApi

urlpatterns = [
    path("dashboard/", DashboardApi.as_view(), name="dashboard"),
    path("events/", EventFeedApi.as_view(), name="events"),
    path("orders/<uuid:order_id>/events/", OrderTimelineApi.as_view(), name="order-events"),
]
