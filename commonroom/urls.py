from django.urls import path
from django.views.generic import RedirectView

from classes.admin import admin_site
from commonroom.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin_site.urls),
    # Until the rooms are served (frontend/), the front door is the admin.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
