"""Django REST framework authentication and permission (``pip install keystead[django]``).

In ``settings.py``::

    KEYSTEAD = {"LOCATION": BASE_DIR / "keystead.redb", "PEPPER": None}  # or "postgres://..."

and on a view (or in ``REST_FRAMEWORK``'s defaults)::

    class ChatView(APIView):
        authentication_classes = [KeysteadAuthentication]
        permission_classes = [HasScopes]
        required_scopes = ["chat:completions"]

        def post(self, request):
            return Response({"caller": request.auth.name})   # request.auth: the KeyInfo

The store is opened on first use, once per process (thread-safe; a forked worker opens its
own), from ``settings.KEYSTEAD``: ``LOCATION`` (required), ``PEPPER``, ``REALM``,
``RETRY_AFTER``. ``KeysteadAuthentication`` verifies ``Authorization: Bearer`` with the view's
``required_scopes`` in one core call and returns ``(KeyUser, KeyInfo)``; a refused key is
answered with the core's status and ``WWW-Authenticate`` (401 ``invalid_token``, 400
``invalid_request``, 403 ``insufficient_scope``), an unreachable store with 503 and
``Retry-After``. A request without bearer credentials is left to the next authentication
class; ``HasScopes`` then refuses it with the core's answer, 401 with the ``Bearer``
challenge -- wherever ``KeysteadAuthentication`` is in the view's authentication classes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

try:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.signals import setting_changed
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.exceptions import APIException
    from rest_framework.permissions import BasePermission
    from rest_framework.request import Request
except ImportError:  # tested in test_web_http; the original error stays as __context__
    raise ImportError(
        "keystead.django needs Django and djangorestframework: install them with "
        "`pip install keystead[django]`"
    )

from ._http import DEFAULT_RETRY_AFTER, Decision, Guard, LazyStore, check_scopes
from ._keystead import KeyInfo, KeyStore

if TYPE_CHECKING:
    # Not at run time: rest_framework.views reads settings when imported, and this module
    # must import before Django is configured (settings may name its classes).
    from rest_framework.views import APIView

__all__ = [
    "HasScopes",
    "KeyUser",
    "KeysteadAuthentication",
    "KeysteadRefused",
    "StoreUnavailable",
    "get_guard",
]

_lock = threading.Lock()
_guard: Guard | None = None
_DECISION = "_keystead_decision"
_SCOPES = "_keystead_scopes"


def get_guard() -> Guard:
    """The process's ``Guard`` built from ``settings.KEYSTEAD`` (the store opens lazily)."""
    global _guard
    guard = _guard
    if guard is not None:
        return guard
    with _lock:
        if _guard is None:
            config: Any = getattr(settings, "KEYSTEAD", None)
            if not isinstance(config, dict) or not config.get("LOCATION"):
                raise ImproperlyConfigured(
                    'keystead.django: set settings.KEYSTEAD = {"LOCATION": ...}'
                )
            location = str(config["LOCATION"])
            pepper = config.get("PEPPER")

            def open_store() -> KeyStore:
                return KeyStore(location, pepper=pepper)

            _guard = Guard(
                LazyStore(open_store),
                realm=config.get("REALM"),
                retry_after=config.get("RETRY_AFTER", DEFAULT_RETRY_AFTER),
            )
        return _guard


def _reset(setting: str, **kwargs: Any) -> None:
    """Forgets the guard when ``settings.KEYSTEAD`` changes (``override_settings``)."""
    global _guard
    if setting == "KEYSTEAD":
        with _lock:
            old, _guard = _guard, None
        if old is not None and isinstance(old.store, LazyStore):
            old.store.close()


setting_changed.connect(_reset, dispatch_uid="keystead.django.reset")


class KeyUser:
    """The ``request.user`` of a request authenticated by a key (not a Django user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, key: KeyInfo) -> None:
        self.key = key
        self.pk = key.id
        self.username = key.name

    def __str__(self) -> str:
        return self.key.name


class KeysteadRefused(APIException):
    """The core refused the key: 400, 401 or 403 with the core's ``WWW-Authenticate``
    (``auth_header``, which DRF's exception handler sends).

    Not an ``AuthenticationFailed``: for that, DRF takes the challenge from the view's
    *first* authentication class and, when it has none (``SessionAuthentication``), turns
    the status into 403 -- wrong whenever ``KeysteadAuthentication`` is not first."""

    status_code = 401
    default_code = "authentication_failed"

    def __init__(self, decision: Decision) -> None:
        super().__init__(detail={"error": decision.error()})
        self.status_code = decision.status
        self.auth_header = decision.www_authenticate


class StoreUnavailable(APIException):
    """503: the store cannot be reached; DRF sends ``Retry-After`` from ``wait``."""

    status_code = 503
    default_code = "unavailable"

    def __init__(self, decision: Decision) -> None:
        super().__init__(detail={"error": decision.error()})
        self.wait = decision.retry_after


def required_scopes(view: object) -> tuple[str, ...]:
    """The view's ``required_scopes`` (none when it declares none)."""
    scopes: Iterable[str] = getattr(view, "required_scopes", ())
    return check_scopes(scopes)


def _is_bearer(header: str) -> bool:
    return header.split(" ", 1)[0].lower() == "bearer"


class KeysteadAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``, checked for the view's ``required_scopes``."""

    def authenticate(self, request: Request) -> tuple[KeyUser, KeyInfo] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        view = request.parser_context.get("view") if request.parser_context else None
        scopes = required_scopes(view)
        # Another scheme (Basic, Token...) is left to the other authentication classes, as
        # DRF's own classes do; for this class it is the same as no credentials.
        present = header is not None and _is_bearer(header)
        decision = get_guard().check(header if present else None, scopes)
        setattr(request._request, _DECISION, decision)
        if decision.status == 503:
            raise StoreUnavailable(decision)
        if not present:
            return None
        if decision.key is None:
            raise KeysteadRefused(decision)
        setattr(request._request, _SCOPES, scopes)
        return KeyUser(decision.key), decision.key

    def authenticate_header(self, request: Request) -> str:
        decision = getattr(request._request, _DECISION, None)
        if isinstance(decision, Decision) and decision.www_authenticate is not None:
            return decision.www_authenticate
        # Not reached through DRF's flow (authenticate ran first); the missing-credentials
        # challenge, which is all a request that was never checked can be told.
        return get_guard().check(None).www_authenticate or "Bearer"


class HasScopes(BasePermission):
    """Allows only requests authenticated by ``KeysteadAuthentication`` with a key that was
    checked for this view's ``required_scopes``."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        checked = getattr(request._request, _SCOPES, None)
        if isinstance(request.auth, KeyInfo) and checked == required_scopes(view):
            return True
        decision = getattr(request._request, _DECISION, None)
        if request.auth is None and isinstance(decision, Decision) and decision.key is None:
            # No bearer credentials: the core's "missing" answer (401, ``Bearer``), with the
            # same body as every other refusal rather than DRF's NotAuthenticated.
            raise KeysteadRefused(decision)
        return False
