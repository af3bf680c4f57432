"""HTML forms."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from . import protocol


class SignupForm(UserCreationForm):
    """Django's UserCreationForm, refusing text that cannot be stored faithfully (NUL, lone
    surrogates: protocol.validate_text) in every field, as the socket and the API do."""

    def clean(self):
        for name, value in self.data.items():
            if isinstance(value, str) and not protocol.text_storable(value):
                raise forms.ValidationError(
                    "Text must not contain NUL characters or lone surrogates.", code="invalid"
                )
        return super().clean()


class ProfileForm(forms.Form):
    """The settings page: the display name shown beside the username (empty for none)."""

    name = forms.CharField(label="Display name", max_length=150, required=False,
                           help_text="Shown on your messages' cards and in the header. People still @mention your username.")
