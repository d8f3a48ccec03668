"""The HTTP API for scripts: upload, list, control, status, results, documents.

Every endpoint takes `Authorization: Bearer <token>` (auth.TokenAuth) and acts as the
token's user, so roles apply exactly as on the pages: viewers read and download,
operators also upload and press the pool's buttons. Uploads go through the same
parse_upload/batch_create as the upload form; buttons through the same
`request_control` as the dashboard (audited as ControlAction rows with via="api").
Errors are JSON: {"detail": "..."} (400, 401, 403, 404, 409, 413, 429).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db.models import Count, Q
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import File, Form, NinjaAPI, Router, Status
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.files import UploadedFile
from ninja.openapi.docs import Swagger

from poolsite.api.auth import LockedOut, TokenAuth, TokenRateThrottle
from poolsite.api.models import ApiToken
from poolsite.api.schemas import (
    BatchDetail,
    BatchList,
    ControlOut,
    Error,
    ScaleIn,
    StartIn,
    StopIn,
    TokenInfo,
    UploadRefused,
)
from poolsite.batches import views as batch_views
from poolsite.batches.batch_import import Upload, batch_create, parse_upload
from poolsite.batches.models import (
    PENDING_STATUSES,
    RETRYABLE_STATUSES,
    SUCCESS_STATUSES,
    Batch,
    ControlAction,
    Site,
)
from poolsite.batches.roles import can_operate, can_view
from poolsite.dashboard.control_messages import describe
from poolsite.dashboard.snapshot import build_snapshot
from poolsite.dashboard.views import announce
from poolsite.supervisor.controls import ControlRefused, request_control

VIA = "api"
MAX_LISTED = 200


def _docs_access(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The schema and docs page: for a signed-in user (the page) or a token (scripts)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if can_view(request.user):
            return view(request, *args, **kwargs)
        if "Authorization" in request.headers:
            try:
                token = TokenAuth()(request)
            except LockedOut as exc:
                return _locked_out(exc)
            if token is None:
                return _json(401, _UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            if not can_view(request.user):
                return _json(403, "this token's user may not see batches")
            return view(request, *args, **kwargs)
        return redirect_to_login(request.get_full_path())

    return wrapper


api = NinjaAPI(
    title="poolsite API",
    version="1",
    description=(
        "Upload PO batches, run the pool and collect results from scripts. Every call "
        "takes `Authorization: Bearer <token>`; create tokens on the app's API tokens "
        "page. The token acts as its user: viewers read and download, operators also "
        "upload and control the pool. Rate-limited per token (429 with Retry-After)."),
    auth=TokenAuth(),
    throttle=TokenRateThrottle(),
    urls_namespace="api",
    docs=Swagger(settings={"persistAuthorization": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
    docs_decorator=_docs_access,
)
_UNAUTHORIZED = ("a valid API token is needed: send 'Authorization: Bearer <token>' "
                 "(tokens are created on the API tokens page, /api/tokens/)")


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status, headers=headers)


def _locked_out(exc: LockedOut) -> JsonResponse:
    return _json(429, str(exc), {"Retry-After": str(exc.retry_after)})


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _json(401, _UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A malformed request (a missing field, a wrong type) as one readable sentence."""
    said = []
    for error in exc.errors:
        parts = [str(part) for part in error.get("loc", ())[1:] if part != "payload"]
        where = ".".join(parts) or "the request body"
        said.append(f"{where}: {error.get('msg', 'invalid')}")
    return JsonResponse({"detail": "; ".join(said) or "invalid request",
                         "errors": exc.errors}, status=400)


@api.exception_handler(LockedOut)
def _locked(request: HttpRequest, exc: LockedOut) -> HttpResponse:
    return _locked_out(exc)


@api.exception_handler(Throttled)
def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    wait = math.ceil(exc.wait) if exc.wait else 60
    return _json(429, f"rate limit: {settings.POOL_API_RATE_PER_MINUTE} requests a minute "
                 f"per token; retry in {wait} s", {"Retry-After": str(wait)})


def _need_viewer(request: HttpRequest) -> None:
    if not can_view(request.user):
        raise HttpError(403, "this token's user may not see batches")


def _need_operator(request: HttpRequest) -> None:
    if not can_operate(request.user):
        raise HttpError(403, "this token's user may not upload or control the pool "
                        "(operators only)")


# -- who am I --------------------------------------------------------------------------

@api.get("/me", response=TokenInfo, tags=["tokens"], summary="The token and its user's roles")
def me(request: HttpRequest) -> dict[str, Any]:
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    user = token.user
    return {"name": token.name, "prefix": token.prefix, "user": user.get_username(),
            "roles": sorted(user.groups.values_list("name", flat=True))
            + (["superuser"] if user.is_superuser else []),
            "can_operate": can_operate(user), "created_at": token.created_at,
            "last_used_at": token.last_used_at}


# -- batches ---------------------------------------------------------------------------

batches = Router(tags=["batches"])


def _counted() -> Any:
    return Batch.objects.select_related("uploaded_by", "site").annotate(
        total=Count("pos"),
        pending=Count("pos", filter=Q(pos__status__in=PENDING_STATUSES)),
        succeeded=Count("pos", filter=Q(pos__status__in=SUCCESS_STATUSES)),
        failed=Count("pos", filter=Q(pos__status__in=RETRYABLE_STATUSES)),
    )


def _batch_out(batch: Batch, summary: dict[str, int] | None = None) -> dict[str, Any]:
    if summary is None:
        summary = {k: getattr(batch, k) for k in ("total", "pending", "succeeded", "failed")}
    return {
        "id": batch.pk, "name": batch.name, "site": batch.site.name if batch.site else None,
        "site_preset": batch.site_preset, "uploaded_at": batch.uploaded_at,
        "uploaded_by": batch.uploaded_by.get_username() if batch.uploaded_by else None,
        "source_name": batch.source_name, "po_count": batch.po_count, "summary": summary,
        "url": batch.get_absolute_url(),
        "results_csv": reverse("api:batch_results", args=[batch.pk, "csv"]),
        "results_xlsx": reverse("api:batch_results", args=[batch.pk, "xlsx"]),
        "documents_zip": reverse("api:batch_documents", args=[batch.pk]),
    }


def _problems(upload: Upload) -> dict[str, Any]:
    return {
        "detail": f"{upload.problem_count} problem(s) in {upload.filename}: nothing was stored",
        "problem_count": upload.problem_count,
        "problems": [{"message": p.message, "row": p.row, "column": p.column,
                      "value": p.value, "text": str(p)} for p in upload.problems],
    }


def _refusal(detail: str) -> dict[str, Any]:
    return {"detail": detail, "problem_count": 0, "problems": []}


@batches.post("/upload", url_name="batch_upload", response={
    201: BatchDetail, 400: UploadRefused, 403: Error, 413: Error},
    summary="Upload a CSV/XLSX file as a new batch")
def upload(request: HttpRequest, file: File[UploadedFile], site: Form[str],
           name: Form[str] = "", sheet: Form[str] = "", notes: Form[str] = "") -> Any:
    """The same checks as the upload form: on any problem nothing is stored and the
    answer lists each problem's row, column and value (400). On success the batch is
    created at once (no preview step) and its id and counts are returned (201)."""
    _need_operator(request)
    limit = settings.POOL_MAX_UPLOAD_BYTES
    if file.size is not None and file.size > limit:
        return Status(413, {"detail": f"the file is {file.size:,} bytes; the limit is "
                                      f"{limit:,} bytes: nothing was stored. Split it into "
                                      "several batches."})
    found = Site.objects.filter(name=site).first()
    if found is None:
        known = ", ".join(Site.objects.order_by("name").values_list("name", flat=True))
        return Status(400, _refusal(f"there is no site {site!r}; sites: "
                                    f"{known or 'none yet'}"))
    data = file.read()
    filename = file.name or "upload.csv"
    try:
        parsed = parse_upload(data, filename=filename, site=found, sheet=sheet[:100])
    except KeyError as exc:
        return Status(400, _refusal(f"{exc.args[0]}: fix it on the Sites page"))
    if not parsed.ok:
        return Status(400, _problems(parsed))
    batch = batch_create(parsed, name=name[:200], uploaded_by=request.user, notes=notes)
    ControlAction.record(request.user, ControlAction.Action.UPLOAD, batch=batch,
                         arguments={"file": parsed.filename, "sha256": parsed.sha256,
                                    "rows": len(parsed.rows), "preset": parsed.preset.name,
                                    "site": found.name, "via": VIA},
                         outcome=ControlAction.Outcome.DONE,
                         outcome_message=f"{len(parsed.rows)} POs imported")
    return Status(201, _detail(batch))


def _detail(batch: Batch) -> dict[str, Any]:
    return {**_batch_out(batch, batch.summary()), "counts": batch.status_counts(),
            "notes": batch.notes, "extra_columns": batch.extra_columns}


@batches.get("", url_name="batch_list", response={200: BatchList, 403: Error},
             summary="Batches, newest first")
def batch_list(request: HttpRequest, limit: int = 50, offset: int = 0) -> Any:
    _need_viewer(request)
    limit, offset = max(1, min(limit, MAX_LISTED)), max(0, offset)
    found = _counted().order_by("-uploaded_at", "-id")
    return {"count": Batch.objects.count(),
            "batches": [_batch_out(b) for b in found[offset:offset + limit]]}


@batches.get("/{int:batch_id}", url_name="batch_detail",
             response={200: BatchDetail, 403: Error, 404: Error},
             summary="One batch with its POs counted by status")
def batch_detail(request: HttpRequest, batch_id: int) -> Any:
    _need_viewer(request)
    return _detail(get_object_or_404(Batch.objects.select_related("uploaded_by", "site"),
                                     pk=batch_id))


@batches.get("/{int:batch_id}/results.{fmt}", url_name="batch_results",
             response={200: None, 403: Error, 404: Error},
             summary="The results as CSV or XLSX (fmt: csv or xlsx)",
             openapi_extra={"responses": {200: {"description": "the file", "content": {
                 "text/csv": {}, "application/vnd.openxmlformats-officedocument."
                 "spreadsheetml.sheet": {}}}}})
def batch_results(request: HttpRequest, batch_id: int,
                  fmt: str) -> HttpResponse | StreamingHttpResponse:
    _need_viewer(request)
    if fmt not in ("csv", "xlsx"):
        raise HttpError(404, "results come as results.csv or results.xlsx")
    return batch_views.results_response(get_object_or_404(Batch, pk=batch_id), fmt)


@batches.get("/{int:batch_id}/documents.zip", url_name="batch_documents",
             response={200: None, 403: Error, 404: Error},
             summary="Every document of the batch in one ZIP",
             openapi_extra={"responses": {200: {"description": "the ZIP", "content": {
                 "application/zip": {}}}}})
def batch_documents(request: HttpRequest, batch_id: int) -> StreamingHttpResponse:
    _need_viewer(request)
    return batch_views.documents_zip_response(get_object_or_404(Batch, pk=batch_id))


# -- the pool --------------------------------------------------------------------------

pool = Router(tags=["pool"])


@pool.get("/status", url_name="status", response={200: dict[str, Any], 403: Error},
          summary="The dashboard's snapshot: plan, hosts, workers, batch progress")
def status(request: HttpRequest) -> Any:
    _need_viewer(request)
    snapshot = build_snapshot()
    snapshot["can_control"] = can_operate(request.user)
    return snapshot


def _press(request: HttpRequest, action: str, **targets: Any) -> Any:
    _need_operator(request)
    try:
        record = request_control(request.user, action, via=VIA, **targets)
    except ControlRefused as refusal:
        return Status(409, {"detail": str(refusal)})
    announce()  # open dashboards show the press at once, as after a button
    return Status(202, {"id": record.pk, "action": record.action, "outcome": record.outcome,
                        "message": record.outcome_message or describe(record),
                        "plan_version": record.arguments.get("plan_version"),
                        "arguments": record.arguments})


CONTROL_RESPONSES: dict[int, Any] = {202: ControlOut, 403: Error, 404: Error, 409: Error}


@pool.post("/start", url_name="start", response=CONTROL_RESPONSES,
           summary="Start the pool on a batch (the Start button)")
def start(request: HttpRequest, payload: StartIn) -> Any:
    _need_operator(request)
    batch = get_object_or_404(Batch, pk=payload.batch)
    return _press(request, ControlAction.Action.START, batch=batch, size=payload.size)


@pool.post("/pause", url_name="pause", response=CONTROL_RESPONSES,
           summary="Pause: workers finish their current PO, then wait")
def pause(request: HttpRequest) -> Any:
    return _press(request, ControlAction.Action.PAUSE)


@pool.post("/resume", url_name="resume", response=CONTROL_RESPONSES, summary="Resume")
def resume(request: HttpRequest) -> Any:
    return _press(request, ControlAction.Action.RESUME)


@pool.post("/stop", url_name="stop", response=CONTROL_RESPONSES,
           summary="Stop (immediate: abandon work in progress, retried later)")
def stop(request: HttpRequest, payload: StopIn | None = None) -> Any:
    immediate = bool(payload and payload.immediate)
    return _press(request, ControlAction.Action.STOP, immediate=immediate)


@pool.post("/scale", url_name="scale", response=CONTROL_RESPONSES,
           summary="Scale the pool to N workers")
def scale(request: HttpRequest, payload: ScaleIn) -> Any:
    return _press(request, ControlAction.Action.SCALE, size=payload.size)


api.add_router("/batches", batches)
api.add_router("/pool", pool)
