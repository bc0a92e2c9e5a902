from django.contrib.auth import views as auth_views
from django.urls import path

from classes.admin import admin_site
from commonroom.health import healthz
from frontend.views import chat

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin_site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="frontend/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("", chat, name="chat"),
]
