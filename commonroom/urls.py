from django.contrib.auth import views as auth_views
from django.urls import path

from classes.admin import admin_site
from commonroom.health import healthz
from frontend import views

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin_site.urls),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("", views.home, name="home"),
    path("rooms/<int:room_id>/", views.room, name="room"),
    path("policy/", views.policy, name="policy"),
    path("profile/", views.profile, name="profile"),
    path("cases/", views.case_queue, name="cases"),
    path("cases/<int:case_id>/", views.case, name="case"),
    path("review/", views.review_home, name="review"),
    path("review/search/", views.review_search, name="review_search"),
    path("review/dashboard/", views.review_dashboard, name="review_dashboard"),
    path("review/messages/<int:message_id>/", views.review_message, name="review_message"),
    path("review/people/<int:person_id>/", views.review_person, name="review_person"),
    path("review/people/<int:person_id>/access/", views.review_access, name="review_access"),
    path("review/export/search/", views.review_export, {"kind": "search"}, name="review_export_search"),
    path("review/export/cases/<int:pk>/", views.review_export, {"kind": "case"}, name="review_export_case"),
    path("review/export/people/<int:pk>/", views.review_export, {"kind": "person"}, name="review_export_person"),
]
