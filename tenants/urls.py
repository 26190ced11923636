from django.urls import path

from tenants.api import TokenObtainApi, TokenRevokeApi, TokenRotateApi

urlpatterns = [
    path("auth/token", TokenObtainApi.as_view(), name="auth-token"),
    path("auth/token/rotate", TokenRotateApi.as_view(), name="auth-token-rotate"),
    path("auth/token/revoke", TokenRevokeApi.as_view(), name="auth-token-revoke"),
]
