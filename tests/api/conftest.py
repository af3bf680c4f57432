import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import make_room


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Users are made by the dozen here; the real hasher's cost is for attackers, not tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


def token_client(user) -> APIClient:
    """An API client that authenticates with the user's token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def session_client(user, *, csrf: bool = True) -> APIClient:
    """An API client logged in with a session; ``csrf`` enforces CSRF checks as a browser would."""
    client = APIClient(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def ann(user) -> APIClient:
    return token_client(user)


@pytest.fixture
def bob(other) -> APIClient:
    return token_client(other)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def secret(db, user):
    """A private room owned by ann."""
    return make_room(owner=user, slug="secret", private=True)
