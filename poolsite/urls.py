from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("poolsite.supervisor.urls")),
    path("", include("poolsite.dashboard.urls")),
    path("", include("poolsite.batches.urls")),
    path("", include("poolsite.sessions.urls")),
]
