from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.models import ApiToken, Tenant, User
from tenants.services import token_revoke, user_tokens_revoke


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "currency", "timezone", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["id", "created_at"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "tenant", "email", "is_staff", "is_superuser", "is_active"]
    list_filter = ["tenant", "is_staff", "is_superuser", "is_active"]
    list_select_related = ["tenant"]
    fieldsets = (*BaseUserAdmin.fieldsets, ("Bookstore", {"fields": ("tenant",)}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Bookstore", {"fields": ("tenant", "is_staff")}))
    actions = ["revoke_api_tokens"]

    @admin.action(description="Revoke the API tokens of the selected users")
    def revoke_api_tokens(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        revoked = sum(user_tokens_revoke(user=user) for user in queryset)
        self.message_user(request, f"{revoked} API tokens revoked.", messages.SUCCESS)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens as operators may see them: who, when, and the key's first characters; never a key
    (only its hash is stored). Tokens are issued through the API and `create_user`, not here."""

    list_display = ["key_prefix", "user", "created_at", "expires_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["user__username", "key_prefix"]
    fields = ["key_prefix", "user", "created_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            token_revoke(token=token)
        self.message_user(request, f"{len(queryset)} tokens revoked.", messages.SUCCESS)
