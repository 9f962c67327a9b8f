"""keystead.django (Django REST framework) against real Django + DRF served by Django's own
WSGI server (runserver's) on loopback, through the shared table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

# Before rest_framework.views, which reads the settings when imported.
if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,  # this module's urlpatterns
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        DATABASES={},
        MIDDLEWARE=[],
        LOGGING_CONFIG=None,  # every logger propagates to the root logger (caplog)
        SECRET_KEY="test-only",
    )
    django.setup()


from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import override_settings
from django.urls import path as route
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keystead import KeyInfo
from keystead.django import HasScopes, KeysteadAuthentication, KeyUser
from web_helpers import (
    ADMIN_SCOPE,
    CASE_IDS,
    KEY_NAME,
    PEPPER,
    CASES,
    SCOPE,
    UNAVAILABLE,
    Case,
    Keys,
    assert_no_key_material,
    check,
    django_server,
    get,
    make_store,
    unreachable_location,
)


class ChatView(APIView):
    authentication_classes = [KeysteadAuthentication]
    permission_classes = [HasScopes]
    required_scopes = [SCOPE]

    def get(self, request: Request) -> Response:
        key = request.auth
        assert isinstance(key, KeyInfo) and isinstance(request.user, KeyUser)
        assert request.user.username == key.name
        return Response({"caller": key.name, "id": key.id})


class AdminView(ChatView):
    required_scopes = [ADMIN_SCOPE]


class BehindSessionView(ChatView):
    """Keystead after DRF's SessionAuthentication, as in REST_FRAMEWORK's defaults: DRF takes
    the challenge from the first class (here none) and would turn a 401 into a 403."""

    authentication_classes = [SessionAuthentication, KeysteadAuthentication]


class OpenView(APIView):
    """Keystead authentication but no permission: anonymous requests pass."""

    authentication_classes = [KeysteadAuthentication]
    permission_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        return Response({"authenticated": request.auth is not None})


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    route("chat", ChatView.as_view()),
    route("admin", AdminView.as_view()),
    route("open", OpenView.as_view()),
    route("behind-session", BehindSessionView.as_view()),
    route("healthz", healthz),
]


def body_error(body: Any) -> Any:
    return body["error"]


@pytest.fixture(scope="module")
def keys_and_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Path]:
    path = tmp_path_factory.mktemp("django") / "keystead.redb"
    return make_store(path), path


@pytest.fixture(scope="module")
def served(keys_and_path: tuple[Keys, Path]) -> Iterator[tuple[str, Keys]]:
    """settings.KEYSTEAD points at the store; it is opened on the first request."""
    keys, path = keys_and_path
    with override_settings(KEYSTEAD={"LOCATION": path}), django_server() as base:
        yield base, keys


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_drf(served: tuple[str, Keys], case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    base, keys = served
    check(base, keys, case, body_error)
    assert_no_key_material(caplog.text, keys)


def test_drf_without_permission_lets_anonymous_through(served: tuple[str, Keys]) -> None:
    base, keys = served
    assert get(base, "/open", None).body == {"authenticated": False}
    assert get(base, "/open", f"Bearer {keys.valid}").body == {"authenticated": True}
    # Another scheme is left to other authentication classes: anonymous here.
    assert get(base, "/open", "Basic dXNlcjpwYXNz").body == {"authenticated": False}
    # A refused bearer key is refused even without the permission class.
    assert get(base, "/open", f"Bearer {keys.revoked}").status == 401


def test_drf_other_scheme_gets_the_bearer_challenge(served: tuple[str, Keys]) -> None:
    base, _ = served
    answer = get(base, "/chat", "Basic dXNlcjpwYXNz")
    assert answer.status == 401 and answer.headers["www-authenticate"] == "Bearer"


def test_drf_after_another_authentication_class(served: tuple[str, Keys]) -> None:
    """The core's status and challenge even when KeysteadAuthentication is not the first
    authentication class of the view."""
    base, keys = served
    for credential, status, challenge in [
        (None, 401, "Bearer"),
        (f"Bearer {keys.revoked}", 401, 'Bearer error="invalid_token"'),
        ('Bearer token="abc"', 400, 'Bearer error="invalid_request"'),
    ]:
        answer = get(base, "/behind-session", credential)
        assert (answer.status, answer.headers.get("www-authenticate")) == (status, challenge), answer
    assert get(base, "/behind-session", f"Bearer {keys.valid}").body["caller"] == KEY_NAME


def test_drf_unavailable_store_is_503(
    keys_and_path: tuple[Keys, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys, _ = keys_and_path
    settings_ = {"LOCATION": unreachable_location(), "REALM": "hub"}
    with override_settings(KEYSTEAD=settings_), django_server() as base:
        check(base, keys, UNAVAILABLE, body_error)
    assert_no_key_material(caplog.text, keys)


def test_drf_realm_from_settings(keys_and_path: tuple[Keys, Path]) -> None:
    keys, path = keys_and_path
    with override_settings(KEYSTEAD={"LOCATION": path, "REALM": "hub"}), django_server() as base:
        assert get(base, "/chat", None).headers["www-authenticate"] == 'Bearer realm="hub"'
        answer = get(base, "/chat", 'Bearer token="abc"')
        assert answer.status == 400
        assert answer.headers["www-authenticate"] == 'Bearer realm="hub", error="invalid_request"'


def test_drf_missing_settings_is_a_clear_error() -> None:
    from keystead.django import get_guard

    with override_settings(KEYSTEAD=None), pytest.raises(ImproperlyConfigured, match="KEYSTEAD"):
        get_guard()


def test_drf_pepper_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "peppered.redb"
    keys = make_store(path, pepper=PEPPER)
    with override_settings(KEYSTEAD={"LOCATION": path, "PEPPER": PEPPER}), django_server() as base:
        assert get(base, "/chat", f"Bearer {keys.valid}").body["caller"] == KEY_NAME
