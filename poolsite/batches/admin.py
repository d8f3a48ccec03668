"""The audit trail: every model, filters and search an auditor needs, nothing editable
that records what happened (attempts, documents, control actions)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from poolsite.batches import batch_export
from poolsite.batches.models import (
    PENDING_STATUSES,
    RETRYABLE_STATUSES,
    SUCCESS_STATUSES,
    Attempt,
    Batch,
    ControlAction,
    Document,
    POQuerySet,
    PurchaseOrder,
    Run,
    Site,
)
from poolsite.supervisor.controls import ControlRefused, request_control


class ReadOnlyMixin:
    """Viewable by whoever may view; never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def screenshot_thumb(attempt: Attempt) -> SafeString | str:
    if not attempt.screenshot:
        return "—"
    url = reverse("attempt_screenshot", args=[attempt.pk])
    return format_html('<a href="{}"><img src="{}" alt="screenshot" '
                       'style="max-height:60px;max-width:120px"></a>', url, url)


def document_link(document: Document) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse("document_download", args=[document.pk]),
                       document.name)


class AttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = Attempt
    extra = 0
    fields = ("attempt_number", "status", "reason", "message", "worker_id", "host", "run",
              "started_at", "duration", "thumbnail")
    readonly_fields = fields
    ordering = ("attempt_number", "id")
    show_change_link = True

    @admin.display(description="screenshot")
    def thumbnail(self, attempt: Attempt) -> SafeString | str:
        return screenshot_thumb(attempt)


class DocumentInline(ReadOnlyMixin, admin.TabularInline):
    model = Document
    extra = 0
    fields = ("download", "size", "content_type", "source", "sha256", "path", "created_at")
    readonly_fields = fields
    show_change_link = True

    @admin.display(description="file")
    def download(self, document: Document) -> SafeString:
        return document_link(document)


class SupplierFilter(admin.SimpleListFilter):
    """The suppliers with the most POs: a batch can name thousands, the sidebar shows 20."""

    title = "supplier"
    parameter_name = "supplier"
    shown = 20

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        top = (PurchaseOrder.objects.order_by().values_list("supplier")
               .annotate(n=Count("id")).order_by("-n", "supplier")[:self.shown])
        return [(supplier, f"{supplier} ({n})") for supplier, n in top]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(supplier=value) if value else queryset


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "site", "site_preset", "uploaded_by", "uploaded_at",
                    "po_count", "pending", "succeeded", "failed")
    list_filter = ("site", "site_preset", "uploaded_at", "uploaded_by")
    search_fields = ("name", "source_name", "source_sha256", "notes")
    date_hierarchy = "uploaded_at"
    readonly_fields = ("uploaded_by", "uploaded_at", "source_name", "source_sha256",
                       "source_size", "source_sheet", "site", "site_preset", "site_base_url",
                       "po_count", "extra_columns")
    fields = ("name", "notes", *readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches come from batch_import, validated whole

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return super().get_queryset(request).select_related("uploaded_by", "site").annotate(
            n_pending=Count("pos", filter=Q(pos__status__in=PENDING_STATUSES)),
            n_succeeded=Count("pos", filter=Q(pos__status__in=SUCCESS_STATUSES)),
            n_failed=Count("pos", filter=Q(pos__status__in=RETRYABLE_STATUSES)),
        )

    @admin.display(ordering="n_pending")
    def pending(self, batch: Any) -> int:
        return batch.n_pending

    @admin.display(ordering="n_succeeded")
    def succeeded(self, batch: Any) -> int:
        return batch.n_succeeded

    @admin.display(ordering="n_failed")
    def failed(self, batch: Any) -> int:
        return batch.n_failed


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(admin.ModelAdmin):
    list_display = ("po_number", "supplier", "batch", "amount", "status", "reason",
                    "attempts", "last_attempt_at")
    list_filter = ("status", "batch", SupplierFilter, "last_attempt_at", "reason")
    search_fields = ("po_number", "supplier", "supplier_seen")
    date_hierarchy = "last_attempt_at"
    list_select_related = ("batch",)
    list_per_page = 100
    inlines = (AttemptInline, DocumentInline)
    actions = ("retry_selected_failed", "export_selected_csv", "export_selected_xlsx")
    readonly_fields = ("batch", "row_number", "po_number", "supplier", "supplier_seen", "url",
                       "amount",
                       "extra", "status", "reason", "message", "attempts", "output_folder",
                       "first_attempt_at", "last_attempt_at", "leased_by", "lease_expires_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Every field is read-only: the change permission is only for the retry action.
        extra_context = {**(extra_context or {}), "show_save": False,
                         "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Retry selected failed POs", permissions=["change"])
    def retry_selected_failed(self, request: HttpRequest, queryset: POQuerySet) -> None:
        # The dashboard's "retry failed", one press per batch: the same rules, the same
        # audit row (arguments: the PO numbers, via "admin").
        batch_ids = queryset.retryable().values_list("batch_id", flat=True).distinct()
        for batch in Batch.objects.filter(pk__in=list(batch_ids)).order_by("pk"):
            try:
                record = request_control(request.user, ControlAction.Action.RETRY_FAILED,
                                         batch=batch, pos=queryset.filter(batch=batch),
                                         via="admin")
            except ControlRefused as refusal:
                self.message_user(request, f"Batch {batch.pk}: {refusal}", messages.ERROR)
                continue
            self.message_user(request, f"Batch {batch.pk}: {record.outcome_message}.",
                              messages.SUCCESS)

    @admin.action(description="Export selected as CSV")
    def export_selected_csv(self, request: HttpRequest,
                            queryset: QuerySet[PurchaseOrder]) -> StreamingHttpResponse:
        response = StreamingHttpResponse(
            batch_export.csv_stream(queryset, _extra_columns(queryset)),
            content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="purchase-orders.csv"'
        return response

    @admin.action(description="Export selected as XLSX")
    def export_selected_xlsx(self, request: HttpRequest,
                             queryset: QuerySet[PurchaseOrder]) -> HttpResponse:
        response = HttpResponse(
            batch_export.xlsx_bytes(queryset, _extra_columns(queryset)),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        response["Content-Disposition"] = 'attachment; filename="purchase-orders.xlsx"'
        return response


def _extra_columns(queryset: QuerySet[PurchaseOrder]) -> list[str]:
    """The union of the extra columns of the selected POs' batches, in first-seen order."""
    columns: dict[str, None] = {}
    batch_ids = queryset.values_list("batch_id", flat=True).distinct()
    for extra in Batch.objects.filter(pk__in=batch_ids).order_by("pk").values_list(
            "extra_columns", flat=True):
        columns.update(dict.fromkeys(extra or []))
    return list(columns)


@admin.register(Run)
class RunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "batch", "host", "pool_size", "state", "started_by", "started_at",
                    "finished_at", "pos_done", "pos_per_minute", "p95_seconds")
    list_filter = ("state", "host", "started_at")
    search_fields = ("host", "batch__name")
    date_hierarchy = "started_at"
    list_select_related = ("batch", "started_by")


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("po", "attempt_number", "status", "reason", "worker_id", "host", "run",
                    "started_at", "duration", "thumbnail")
    list_filter = ("status", "reason", "retryable", "started_at", "host", "po__batch")
    search_fields = ("po__po_number", "po__supplier", "reason", "message")
    date_hierarchy = "started_at"
    list_select_related = ("po", "run")
    readonly_fields = ("thumbnail",)

    @admin.display(description="screenshot")
    def thumbnail(self, attempt: Attempt) -> SafeString | str:
        return screenshot_thumb(attempt)


@admin.register(Document)
class DocumentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "po", "size", "content_type", "source", "created_at", "download")
    list_filter = ("source", "content_type", "created_at", "po__batch")
    search_fields = ("name", "sha256", "po__po_number", "po__supplier")
    date_hierarchy = "created_at"
    list_select_related = ("po",)
    readonly_fields = ("download",)

    @admin.display(description="download")
    def download(self, document: Document) -> SafeString:
        return document_link(document)


@admin.register(ControlAction)
class ControlActionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "username", "action", "batch", "run", "po", "outcome",
                    "outcome_message", "handled_at", "handled_by")
    list_filter = ("action", "outcome", "created_at", "username")
    search_fields = ("username", "po__po_number", "batch__name", "outcome_message")
    date_hierarchy = "created_at"
    list_select_related = ("batch", "run", "po")


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    """Sites as on the Sites page; every save and delete is audited the same way."""

    list_display = ("name", "preset", "base_url", "extra_hosts", "created_at", "updated_at")
    list_filter = ("preset",)
    search_fields = ("name", "base_url")
    readonly_fields = ("created_at", "updated_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        from poolsite.batches.forms import SiteForm

        kwargs["form"] = SiteForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Site, form: Any, change: bool) -> None:
        if change:
            before = Site.objects.get(pk=obj.pk).audited_values()
            if obj.audited_values() == before:
                return
            obj.updated_at = timezone.now()
            obj.save()
            obj.record_change(request.user, ControlAction.Action.CHANGE_SITE, before)
        else:
            obj.save()
            obj.record_change(request.user, ControlAction.Action.ADD_SITE)

    def delete_model(self, request: HttpRequest, obj: Site) -> None:
        before = obj.audited_values()
        obj.record_change(request.user, ControlAction.Action.DELETE_SITE, before)
        obj.delete()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        for site in queryset:
            self.delete_model(request, site)
