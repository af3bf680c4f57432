"""The OpenAPI document: valid, served with local assets, and true to the API (schemathesis)."""

import re

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chat import services
from chat.models import Membership
from tests.factories import make_room

MAX_EXAMPLES = 20


def test_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/rooms/{slug}/messages/" in (tmp_path / "schema.yml").read_text()


@pytest.fixture
def _in_test_transaction():
    """Let the WSGI app run inside the test's transaction, as Django's test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_user(db, user, other, general, _in_test_transaction):
    """ann, owner of general, with rooms and messages for generated requests to find."""
    general.owner = user
    general.save()
    Membership.objects.create(room=general, user=user, role=Membership.Role.OWNER)
    room = make_room(owner=user, slug="lobby")
    secret = make_room(owner=other, slug="secret", private=True)
    for i in range(3):
        services.message_post(room=general, author=user, body=f"hello {i}", client_id=f"g{i}")
        services.message_post(room=room, author=other, body=f"lobby {i}", client_id=f"l{i}")
        services.message_post(room=secret, author=other, body=f"secret {i}", client_id=f"s{i}")
    return user


# Loaded at collection: serving the schema needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_user):
    """No 5xx, and every response is one the schema documents, for generated requests."""
    key = "f" * 40
    Token.objects.get_or_create(key=key, defaults={"user": fuzz_user})  # DELETE auth/token/ revokes it
    # Not positive_data_acceptance: schema-valid requests are refused by design (a wrong
    # password, a taken slug, a body that is only white space), which a schema cannot express.
    case.call_and_validate(
        headers={"Authorization": f"Token {key}"}, excluded_checks=[positive_data_acceptance]
    )


def test_docs_page_loads_its_assets_from_this_server(anon, db):
    """The Swagger UI works offline: every script and stylesheet is a local static file."""
    response = anon.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/" + django_settings.STATIC_URL.lstrip("/")), asset
        assert finders.find(asset.split("/static/", 1)[1]), asset
    assert '"/api/schema/"' in html
    assert anon.get("/api/schema/").status_code == 200
