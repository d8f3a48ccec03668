"""What the API takes and answers, as pydantic schemas (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import Field


class Error(Schema):
    detail: str = Field(description="what went wrong, in a sentence")


class ProblemOut(Schema):
    message: str
    row: int | None = Field(None, description="spreadsheet row: the header is row 1")
    column: str = ""
    value: str | None = None
    text: str = Field(description="the problem as the upload page shows it")


class UploadRefused(Schema):
    detail: str
    problem_count: int
    problems: list[ProblemOut] = Field(description="the first problems (at most 500)")


class BatchOut(Schema):
    id: int
    name: str
    site: str | None
    site_preset: str
    uploaded_at: datetime
    uploaded_by: str | None
    source_name: str
    po_count: int
    summary: dict[str, int] = Field(description="total, pending, succeeded, failed")
    url: str = Field(description="the batch's page in the app")
    results_csv: str
    results_xlsx: str
    documents_zip: str


class BatchDetail(BatchOut):
    counts: dict[str, int] = Field(description="POs by status, every status included")
    notes: str
    extra_columns: list[str]


class BatchList(Schema):
    count: int
    batches: list[BatchOut]


class StartIn(Schema):
    batch: int = Field(description="the batch to work on")
    size: int | None = Field(None, description="pool size to start with (1-8)")


class StopIn(Schema):
    immediate: bool = Field(False, description="abandon work in progress (retried later) "
                            "instead of letting workers finish their current PO")


class ScaleIn(Schema):
    size: int = Field(description="workers (1-8)")


class ControlOut(Schema):
    id: int = Field(description="the audit record (ControlAction)")
    action: str
    outcome: str = Field(description="pending until a pool host applies it, or done")
    message: str
    plan_version: int | None
    arguments: dict[str, Any]


class TokenInfo(Schema):
    name: str
    prefix: str
    user: str
    roles: list[str]
    can_operate: bool
    created_at: datetime
    last_used_at: datetime | None
