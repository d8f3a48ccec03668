from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from poolsite.batches.models import Site
from poolsite.notifications.models import Event, NotificationTarget, mask_url


def valid_apprise_url(url: str) -> bool:
    import apprise

    return bool(apprise.Apprise().add(url))


class TargetForm(forms.ModelForm):
    """Add or change a target. An Apprise URL is a secret: never put back in the page;
    left empty when changing a target, the saved one is kept."""

    address = forms.CharField(
        max_length=2000, required=False, widget=forms.TextInput(attrs={"size": 60}),
        help_text="e-mail: addresses separated by commas; Apprise: one URL, e.g. "
                  "slack://…, msteams://…, json://host/path")
    events = forms.MultipleChoiceField(choices=Event.choices,
                                       widget=forms.CheckboxSelectMultiple)
    site = forms.ModelChoiceField(queryset=Site.objects.order_by("name"), required=False,
                                  empty_label="every site")

    class Meta:
        model = NotificationTarget
        fields = ["name", "kind", "address", "events", "site", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved_address = self.instance.address if self.instance.pk else ""
        if self.data.get("kind", self.instance.kind) == NotificationTarget.Kind.APPRISE:
            # A page shown again (an error) must not hold the URL typed in.
            self.fields["address"].widget = forms.PasswordInput(
                render_value=False, attrs={"size": 60, "autocomplete": "off"})
        if self.instance.pk and self.instance.kind == NotificationTarget.Kind.APPRISE:
            self.initial["address"] = ""
            self.fields["address"].help_text = (
                f"saved: {mask_url(self.saved_address)} — leave empty to keep it")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, address = data.get("kind"), (data.get("address") or "").strip()
        keeps = (not address and self.instance.pk and kind == self.instance.kind
                 == NotificationTarget.Kind.APPRISE)
        if keeps:
            address = self.saved_address
        if not address:
            self.add_error("address", "an address is needed")
        elif kind == NotificationTarget.Kind.EMAIL:
            emails = [a.strip() for a in address.split(",") if a.strip()]
            for email in emails:
                try:
                    validate_email(email)
                except ValidationError:
                    self.add_error("address", f"not an e-mail address: {email}")
            address = ", ".join(emails)
        elif kind == NotificationTarget.Kind.APPRISE and not keeps and not valid_apprise_url(
                address):
            # Never echo the URL back: the page would show the secret.
            self.add_error("address", f"not a URL Apprise knows ({mask_url(address)})")
        data["address"] = address
        return data
