from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Sign-in only: accounts are made by an admin, and no mail is configured for the
    # password-reset flow, so it is not offered.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(),
         name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("", include("poolsite.supervisor.urls")),
    path("", include("poolsite.dashboard.urls")),
    path("", include("poolsite.batches.urls")),
    path("", include("poolsite.sessions.urls")),
    path("", include("poolsite.api.urls")),
    path("", include("poolsite.notifications.urls")),
]
