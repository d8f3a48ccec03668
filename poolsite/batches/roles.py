"""Two roles: viewers see and download; operators also upload and control the pool.

Roles are Django groups ("viewers", "operators", created by a data migration) carrying
model permissions, so `user.has_perm` answers every check and superusers count as
operators. Every view goes through one of the two decorators below.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_safe

OPERATORS = "operators"
VIEWERS = "viewers"
VIEW_PERMISSION = "batches.view_batch"
UPLOAD_PERMISSION = "batches.add_batch"
CONTROL_PERMISSION = "batches.control_pool"

# Permissions (codenames of the batches app) each group gets.
VIEWER_CODENAMES = (
    "view_batch", "view_purchaseorder", "view_run", "view_attempt", "view_document",
    "view_controlaction", "view_site",
)
OPERATOR_CODENAMES = (*VIEWER_CODENAMES, "add_batch", "control_pool", "change_purchaseorder",
                      "add_site", "change_site", "delete_site")

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def can_view(user: Any) -> bool:
    return bool(user.is_authenticated and user.has_perm(VIEW_PERMISSION))


def can_operate(user: Any) -> bool:
    return bool(user.is_authenticated and user.has_perm(CONTROL_PERMISSION)
                and user.has_perm(UPLOAD_PERMISSION))


def _requiring(check: Callable[[Any], bool]) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return cast(View, wrapper)

    return decorator


def viewer_required(view: View) -> View:
    """Read-only pages: signed in, allowed to see, and GET/HEAD only.

    Being read-only is part of the role: a POST to a page that only shows things is
    refused (405) instead of being treated as a GET.
    """
    return require_safe(_requiring(can_view)(view))


operator_required = _requiring(can_operate)
