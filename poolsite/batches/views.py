"""Pages for batches: list, upload with preview, detail, exports, documents, evidence.

Every view is wrapped by `viewer_required` (see, download) or `operator_required`
(upload, control); templates show controls only when `can_operate` is true.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from poolsite.batches import batch_export, parsed_uploads, workbook_export
from poolsite.batches.batch_import import Upload, batch_create, parse_upload
from poolsite.batches.forms import ConfirmForm, POFilterForm, UploadForm, UploadLimitHandler
from poolsite.batches.models import (
    PENDING_STATUSES,
    RETRYABLE_STATUSES,
    SUCCESS_STATUSES,
    Attempt,
    Batch,
    ControlAction,
    Document,
    PurchaseOrder,
    Site,
    Status,
)
from poolsite.batches.roles import can_operate, operator_required, viewer_required
from poolsite.supervisor.controls import ControlRefused, request_control

PAGE_SIZE = 100
UPLOAD_FORM_OVERHEAD = 64 * 1024  # the form's other fields and multipart boundaries
STALE_PREVIEW_SECONDS = 24 * 3600
DOUBLE_SUBMIT_SECONDS = 60


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {"can_operate": can_operate(request.user), **extra}


def _upload_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """The upload page also says when no site is configured yet (and where to add one)."""
    return _context(request, no_sites=not Site.objects.exists(), **extra)


# -- list and upload -------------------------------------------------------------------

@viewer_required
def batch_list(request: HttpRequest) -> HttpResponse:
    batches = Batch.objects.select_related("uploaded_by").annotate(
        total=Count("pos"),
        pending=Count("pos", filter=Q(pos__status__in=PENDING_STATUSES)),
        succeeded=Count("pos", filter=Q(pos__status__in=SUCCESS_STATUSES)),
        failed=Count("pos", filter=Q(pos__status__in=RETRYABLE_STATUSES)),
    ).order_by("-uploaded_at", "-id")
    page = Paginator(batches, 50).get_page(request.GET.get("page"))
    return render(request, "batches/list.html", _context(request, page=page))


@csrf_exempt  # checked by _batch_upload, after the size limit is in place
@operator_required
def batch_upload(request: HttpRequest) -> HttpResponse:
    """Check an uploaded file and show its preview (or its problems)."""
    limit = settings.POOL_MAX_UPLOAD_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit + UPLOAD_FORM_OVERHEAD:
        return _too_large(request, limit)
    limiter = UploadLimitHandler(request, limit)
    request.upload_handlers = [limiter, *request.upload_handlers]
    return _batch_upload(request, limiter)


@csrf_protect
def _batch_upload(request: HttpRequest, limiter: UploadLimitHandler) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    if limiter.exceeded:
        return _too_large(request, limiter.limit)
    if request.method != "POST" or not form.is_valid():
        return render(request, "batches/upload.html", _upload_context(request, form=form),
                      status=400 if request.method == "POST" else 200)
    file = form.cleaned_data["file"]
    data = file.read()
    site = form.cleaned_data["site"]
    upload = _parse(request, form, data, file.name, site, form.cleaned_data["sheet"])
    if isinstance(upload, HttpResponse):
        return upload
    if not upload.ok:
        return _refused(request, form, upload)
    _stage(upload.sha256, data)
    # The confirm step takes these rows instead of reading the workbook again.
    parsed_uploads.keep(upload, sheet=form.cleaned_data["sheet"])
    confirm = ConfirmForm(initial={"token": upload.sha256, "filename": file.name,
                                   "site": site.name,
                                   **{k: form.cleaned_data[k]
                                      for k in ("name", "sheet", "notes")}})
    return render(request, "batches/preview.html",
                  _context(request, upload=upload, confirm=confirm,
                           name=form.cleaned_data["name"] or Path(file.name).stem))


@operator_required
@require_POST
def batch_confirm(request: HttpRequest) -> HttpResponse:
    form = ConfirmForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The preview expired or was tampered with: upload again.")
        return redirect("batch_upload")
    fields = form.cleaned_data
    data = _staged(fields["token"])
    if data is None:
        messages.error(request, "The uploaded file is gone: upload it again.")
        return redirect("batch_upload")
    retry_form = UploadForm(initial={**fields, "site": fields["site"].pk})
    upload: Upload | HttpResponse | None = parsed_uploads.take(
        fields["token"], site=fields["site"], sheet=fields["sheet"], data=data)
    if upload is None:  # no kept preview (another host, or cleaned up): read it again
        upload = _parse(request, retry_form, data, fields["filename"], fields["site"],
                        fields["sheet"])
    if isinstance(upload, HttpResponse):
        return upload
    upload.filename = fields["filename"]
    if not upload.ok:
        return _refused(request, retry_form, upload)
    with transaction.atomic():  # IMMEDIATE on SQLite: a double click waits, then finds it
        twin = _just_created(request, upload.sha256)
        if twin is not None:
            messages.info(request, f"Batch {twin.name!r} was already created from this file.")
            return redirect(twin)
        batch = batch_create(upload, name=fields["name"], uploaded_by=request.user,
                             notes=fields["notes"])
    parsed_uploads.forget(upload.sha256)
    ControlAction.record(request.user, ControlAction.Action.UPLOAD, batch=batch,
                         arguments={"file": upload.filename, "sha256": upload.sha256,
                                    "rows": len(upload.rows), "preset": upload.preset.name,
                                    "site": fields["site"].name},
                         outcome=ControlAction.Outcome.DONE,
                         outcome_message=f"{len(upload.rows)} POs imported")
    messages.success(request, f"Batch {batch.name!r} created with {batch.po_count} POs.")
    return redirect(batch)


def _parse(request: HttpRequest, form: UploadForm, data: bytes, filename: str, site: Site,
           sheet: str) -> Upload | HttpResponse:
    """Validate the file for the site; a site whose preset is gone is refused plainly."""
    try:
        return parse_upload(data, filename=filename, site=site, sheet=sheet)
    except KeyError as exc:
        return render(request, "batches/upload.html", _upload_context(
            request, form=form, refusal=f"{exc.args[0]}: fix it on the Sites page"),
            status=400)


def _just_created(request: HttpRequest, sha256: str) -> Batch | None:
    """The batch this user made from the same file a moment ago (a double click)."""
    since = timezone.now() - timedelta(seconds=DOUBLE_SUBMIT_SECONDS)
    return Batch.objects.filter(source_sha256=sha256, uploaded_by=request.user.pk,
                                uploaded_at__gte=since).first()


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    return render(request, "batches/upload.html", _upload_context(
        request, form=UploadForm(), refusal=f"The file is over the limit of {limit:,} bytes: "
        "nothing was stored. Split it into several batches."), status=400)


def _refused(request: HttpRequest, form: UploadForm, upload: Upload) -> HttpResponse:
    return render(request, "batches/upload.html",
                  _upload_context(request, form=form, upload=upload), status=400)


def _stage_dir() -> Path:
    folder = Path(settings.DATA_DIR) / "uploads"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _stage(sha256: str, data: bytes) -> None:
    """Keep a previewed file until it is confirmed (and after: it is the batch's source)."""
    folder = _stage_dir()
    _forget_stale_previews(folder)
    path = folder / sha256
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def _forget_stale_previews(folder: Path) -> None:
    """Delete previews nobody confirmed within a day; confirmed ones are batch sources."""
    cutoff = time.time() - STALE_PREVIEW_SECONDS
    stale = {p.name: p for p in folder.iterdir() if p.stat().st_mtime < cutoff}
    if not stale:
        return
    kept = set(Batch.objects.filter(source_sha256__in=stale).values_list("source_sha256",
                                                                         flat=True))
    for name, path in stale.items():
        if name not in kept:
            path.unlink(missing_ok=True)


def _staged(sha256: str) -> bytes | None:
    path = _stage_dir() / sha256
    return path.read_bytes() if path.is_file() else None


# -- detail ----------------------------------------------------------------------------

@viewer_required
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch.objects.select_related("uploaded_by", "site"),
                              pk=batch_id)
    filters = POFilterForm(request.GET or None)
    pos = _filtered(batch.pos.all(), filters)
    page = Paginator(pos, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    counts = batch.status_counts()
    return render(request, "batches/detail.html", _context(
        request, batch=batch, filters=filters, page=page, query=query.urlencode(),
        counts=[(Status(s).label, s, n) for s, n in counts.items() if n],
        summary=batch.summary(), runs=batch.runs.select_related("started_by")[:20],
        actions=batch.control_actions.all()[:20],
    ))


def _filtered(pos: QuerySet[PurchaseOrder], filters: POFilterForm) -> QuerySet[PurchaseOrder]:
    if not filters.is_valid():
        return pos
    data = filters.cleaned_data
    if data["status"]:
        pos = pos.filter(status=data["status"])
    if data["supplier"]:
        pos = pos.filter(Q(supplier__icontains=data["supplier"])
                         | Q(supplier="", supplier_seen__icontains=data["supplier"]))
    if data["q"]:
        pos = pos.filter(po_number__icontains=data["q"])
    return pos


@viewer_required
def po_detail(request: HttpRequest, po_id: int) -> HttpResponse:
    po = get_object_or_404(PurchaseOrder.objects.select_related("batch"), pk=po_id)
    return render(request, "batches/po_detail.html", _context(
        request, po=po, batch=po.batch,
        attempts=po.attempt_set.select_related("run").order_by("attempt_number", "id"),
        documents=po.documents.all(), actions=po.control_actions.all()[:20],
    ))


# -- downloads -------------------------------------------------------------------------

@viewer_required
def batch_export_view(request: HttpRequest, batch_id: int,
                      fmt: str) -> HttpResponse | StreamingHttpResponse:
    if fmt not in ("csv", "xlsx"):
        raise Http404("results come as .csv or .xlsx")
    return results_response(get_object_or_404(Batch, pk=batch_id), fmt)


def results_response(batch: Batch, fmt: str) -> HttpResponse | StreamingHttpResponse:
    """The batch's results as a .csv or .xlsx download (the pages and the API)."""
    pos = batch.pos.all()
    stem = f"batch-{batch.pk}-results"
    if fmt == "csv":
        response: HttpResponse | StreamingHttpResponse = StreamingHttpResponse(
            batch_export.csv_stream(pos, batch.extra_columns),
            content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(
            batch_export.xlsx_bytes(pos, batch.extra_columns, title=f"batch {batch.pk}"),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response["Content-Disposition"] = f'attachment; filename="{stem}.{fmt}"'
    return response


@viewer_required
def batch_results_workbook(request: HttpRequest, batch_id: int) -> HttpResponse:
    """The operator's own file back, with each PO's status beside its row."""
    batch = get_object_or_404(Batch, pk=batch_id)
    try:
        data, filename, content_type = workbook_export.results_file(batch)
    except workbook_export.NoSource as exc:
        raise Http404(str(exc)) from None
    response = HttpResponse(data, content_type=content_type)
    # The name came from an upload: keep it to plain characters inside the header.
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
                   for c in filename)
    response["Content-Disposition"] = f'attachment; filename="{safe}"'
    return response


@viewer_required
def batch_documents_zip(request: HttpRequest, batch_id: int) -> StreamingHttpResponse:
    return documents_zip_response(get_object_or_404(Batch, pk=batch_id))


def documents_zip_response(batch: Batch) -> StreamingHttpResponse:
    """Every document of the batch in one streamed ZIP (the pages and the API)."""
    documents = Document.objects.filter(po__batch=batch).order_by("po_id", "id").iterator(500)
    response = StreamingHttpResponse(batch_export.zip_stream(documents),
                                     content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-documents.zip"'
    return response


def _file_response(relative: str, **kwargs: Any) -> FileResponse:
    path = batch_export.output_path(relative)
    if path is None or not path.is_file():
        raise Http404("file not found")
    return FileResponse(path.open("rb"), **kwargs)


@viewer_required
def document_download(request: HttpRequest, document_id: int) -> FileResponse:
    document = get_object_or_404(Document, pk=document_id)
    return _file_response(document.path, as_attachment=True, filename=document.name,
                          content_type=document.content_type or "application/octet-stream")


@viewer_required
def attempt_screenshot(request: HttpRequest, attempt_id: int) -> FileResponse:
    attempt = get_object_or_404(Attempt, pk=attempt_id)
    return _file_response(attempt.screenshot, content_type="image/png")


@viewer_required
def attempt_html(request: HttpRequest, attempt_id: int) -> FileResponse:
    """Serve a failure's HTML as plain text: it came from a foreign site, never render it."""
    attempt = get_object_or_404(Attempt, pk=attempt_id)
    return _file_response(attempt.html_evidence, as_attachment=True,
                          filename=f"attempt-{attempt.pk}.html.txt",
                          content_type="text/plain; charset=utf-8")


# -- controls --------------------------------------------------------------------------

@operator_required
@require_POST
def batch_retry_failed(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    _control(request, "retry_failed", batch=batch)
    return redirect(batch)


@operator_required
@require_POST
def po_retry(request: HttpRequest, po_id: int) -> HttpResponse:
    po = get_object_or_404(PurchaseOrder, pk=po_id)
    _control(request, "retry_failed", batch=po.batch, po=po)
    return redirect(po)


@operator_required
@require_POST
def po_cancel(request: HttpRequest, po_id: int) -> HttpResponse:
    po = get_object_or_404(PurchaseOrder, pk=po_id)
    _control(request, "cancel_po", po=po)
    return redirect(po)


def _control(request: HttpRequest, action: str, **targets: Any) -> None:
    """Press a button through the one entry point, and tell the operator what came of it."""
    try:
        record = request_control(request.user, action, **targets)
    except ControlRefused as refusal:
        messages.warning(request, str(refusal))
        return
    if record.outcome == ControlAction.Outcome.PENDING:
        messages.info(request, "The pool will stop it after the current attempt.")
    else:
        messages.success(request, record.outcome_message or "Done.")
