from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from poolsite.batches.batch_import import site_presets
from poolsite.batches.models import Status


def preset_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} — {preset.description}" if preset.description else name)
            for name, preset in sorted(site_presets().items())]


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV (any common delimiter) or XLSX, one row per PO")
    name = forms.CharField(max_length=200, required=False,
                           help_text="defaults to the file name")
    preset = forms.ChoiceField(label="Site", choices=preset_choices, initial="demo")
    sheet = forms.CharField(max_length=100, required=False,
                            help_text="XLSX only; defaults to the first sheet")
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        limit = settings.POOL_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"the file is {upload.size:,} bytes; the limit is {limit:,} bytes")
        return upload


class ConfirmForm(forms.Form):
    """The preview's hidden fields: the staged file's sha256 and the upload's options."""

    token = forms.RegexField(regex=r"^[0-9a-f]{64}$", widget=forms.HiddenInput)
    filename = forms.CharField(max_length=255, widget=forms.HiddenInput)
    name = forms.CharField(max_length=200, required=False, widget=forms.HiddenInput)
    preset = forms.ChoiceField(choices=preset_choices, widget=forms.HiddenInput)
    sheet = forms.CharField(max_length=100, required=False, widget=forms.HiddenInput)
    notes = forms.CharField(required=False, widget=forms.HiddenInput)


class POFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *Status.choices], required=False)
    supplier = forms.CharField(max_length=255, required=False)
    q = forms.CharField(label="PO number", max_length=64, required=False)


class UploadLimitHandler(FileUploadHandler):
    """Stop reading an upload once it passes the limit, instead of spooling it to disk.

    Django's own handlers would write a 10 GB upload to a temp file before the form's
    size check ever ran.
    """

    def __init__(self, request: Any, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
