from django.urls import path

from poolsite.dashboard import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/control/", views.control, name="dashboard_control"),
]
