from django.urls import path

from poolsite.batches import site_views, views

urlpatterns = [
    path("batches/", views.batch_list, name="batch_list"),
    path("batches/upload/", views.batch_upload, name="batch_upload"),
    path("batches/upload/confirm/", views.batch_confirm, name="batch_confirm"),
    path("batches/<int:batch_id>/", views.batch_detail, name="batch_detail"),
    path("batches/<int:batch_id>/results.<str:fmt>", views.batch_export_view,
         name="batch_export"),
    path("batches/<int:batch_id>/results-in-workbook/", views.batch_results_workbook,
         name="batch_results_workbook"),
    path("batches/<int:batch_id>/documents.zip", views.batch_documents_zip,
         name="batch_documents_zip"),
    path("batches/<int:batch_id>/retry-failed/", views.batch_retry_failed,
         name="batch_retry_failed"),
    path("pos/<int:po_id>/", views.po_detail, name="po_detail"),
    path("pos/<int:po_id>/retry/", views.po_retry, name="po_retry"),
    path("pos/<int:po_id>/cancel/", views.po_cancel, name="po_cancel"),
    path("documents/<int:document_id>/", views.document_download, name="document_download"),
    path("attempts/<int:attempt_id>/screenshot.png", views.attempt_screenshot,
         name="attempt_screenshot"),
    path("attempts/<int:attempt_id>/page.html.txt", views.attempt_html, name="attempt_html"),
    path("sites/", site_views.site_list, name="site_list"),
    path("sites/add/", site_views.site_add, name="site_add"),
    path("sites/<int:site_id>/", site_views.site_edit, name="site_edit"),
    path("sites/<int:site_id>/delete/", site_views.site_delete, name="site_delete"),
]
