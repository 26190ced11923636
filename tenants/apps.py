from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Bookstores and users"
    default_auto_field = "django.db.models.BigAutoField"


class StaffAdminConfig(admin_apps.AdminConfig):
    """Django's admin whose site is the staff admin (`tenants.admin_site`): it opens on the dashboard."""

    default = False  # named in INSTALLED_APPS instead of django.contrib.admin; not the tenants app's config
    default_site = "tenants.admin_site.StaffAdminSite"
