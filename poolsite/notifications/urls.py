from django.urls import path

from poolsite.notifications import views

urlpatterns = [
    path("notifications/", views.target_list, name="notification_list"),
    path("notifications/add/", views.target_add, name="notification_add"),
    path("notifications/<int:target_id>/", views.target_edit, name="notification_edit"),
    path("notifications/<int:target_id>/delete/", views.target_delete,
         name="notification_delete"),
    path("notifications/<int:target_id>/test/", views.target_test, name="notification_test"),
]
