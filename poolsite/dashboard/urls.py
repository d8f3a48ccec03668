from django.urls import path

from poolsite.dashboard import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/control/", views.control, name="dashboard_control"),
    # A worker card's PO: cards know the PO's number and their host's batch, not its id.
    path("dashboard/po/<int:batch_id>/<path:po_number>", views.worker_po,
         name="dashboard_worker_po"),
]
