from django.urls import path

from poolsite.batches import views

urlpatterns = [
    path("", views.index, name="index"),
]
