from django.urls import path

from classes.admin import admin_site
from commonroom.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin_site.urls),
]
