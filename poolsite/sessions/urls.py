from django.urls import path

from poolsite.sessions import views

urlpatterns = [
    path("site-sessions/", views.sessions_page, name="site_sessions"),
    path("site-sessions/upload/", views.session_upload, name="site_session_upload"),
    path("site-sessions/<str:site>/check/", views.session_check, name="site_session_check"),
    path("site-sessions/<str:site>/delete/", views.session_delete, name="site_session_delete"),
]
