from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from tenants.models import Tenant, User


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
