from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class StaffAdminSiteConfig(AppConfig):
    """The staff admin's own templates and stylesheet (`templates/admin/`, `static/shelfwise/`)."""

    name = "staff_admin"
    verbose_name = "Staff admin"


class StaffAdminConfig(admin_apps.AdminConfig):
    """Django's admin whose site is the staff admin (`staff_admin.site`): it opens on the dashboard."""

    default = False  # named in INSTALLED_APPS instead of django.contrib.admin
    default_site = "staff_admin.site.StaffAdminSite"
