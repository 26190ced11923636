from django.urls import path

from tenants.api import TokenObtainApi

urlpatterns = [path("auth/token", TokenObtainApi.as_view(), name="auth-token")]
