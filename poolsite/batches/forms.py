from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from poolsite.batches import site_rules
from poolsite.batches.models import Site, Status


def preset_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} — {preset.description}" if preset.description else name)
            for name, preset in sorted(site_rules.site_presets().items())]


class SiteChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} — {obj.base_url}"


def _site_field(**kwargs: Any) -> SiteChoiceField:
    return SiteChoiceField(queryset=Site.objects.order_by("name"), to_field_name="name",
                           empty_label=None, label="Site", **kwargs)


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV (any common delimiter) or XLSX, one row per PO")
    name = forms.CharField(max_length=200, required=False,
                           help_text="defaults to the file name")
    site = _site_field(help_text="the configured site the POs are on (Sites page)")
    sheet = forms.CharField(max_length=100, required=False,
                            help_text="XLSX only; defaults to a sheet named PO_Data, "
                                      "else the first")
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
    site = _site_field(widget=forms.HiddenInput)
    sheet = forms.CharField(max_length=100, required=False, widget=forms.HiddenInput)
    notes = forms.CharField(required=False, widget=forms.HiddenInput)


class SiteForm(forms.ModelForm):
    """Add or change a configured site; the model's clean() holds the rules."""

    preset = forms.ChoiceField(choices=preset_choices,
                               help_text="how pages of this kind of site are read")
    extra_hosts = forms.CharField(
        label="Extra allowed hosts", required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="hosts its downloads come from, one per line: files.example.com or "
                  "*.example.com (the address's own host is always allowed)")

    class Meta:
        model = Site
        fields = ("name", "preset", "base_url", "extra_hosts")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["extra_hosts"] = "\n".join(self.instance.extra_hosts or [])

    def clean_extra_hosts(self) -> list[str]:
        try:
            return site_rules.normalise_hosts(self.cleaned_data.get("extra_hosts") or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


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
