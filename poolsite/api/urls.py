from django.urls import path

from poolsite.api import views
from poolsite.api.api import api

urlpatterns = [
    path("api/tokens/", views.token_list, name="api_tokens"),
    path("api/tokens/<int:token_id>/revoke/", views.token_revoke, name="api_token_revoke"),
    path("api/", api.urls),
]
