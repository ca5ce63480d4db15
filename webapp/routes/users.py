"""``/v1/users``: login, logout and user management (reference §2.2)."""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from shared.errors import ApiError, ErrorCode
from webapp.auth import DEFAULT_ADMIN
from webapp.envelope import ok, read_json, validate
from webapp.login_guard import client_address
from webapp.openapi import doc
from webapp.routes.common import principal, require_admin
from webapp.schemas.responses import LoginResponse, UserDetailsResponse, UsersResponse
from webapp.schemas.users import CreateUserBody, LoginBody, UpdateUserBody, Username
from webapp.state import AUTH_KEY, METRICS_KEY, WEB_SETTINGS_KEY

routes = web.RouteTableDef()

_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="WhatsApp"'}
_USERNAME: TypeAdapter[str] = TypeAdapter(Username)
USER_PATH = "/v1/users/{username:(?!login$|logout$)[^/]+}"
"""``/v1/users/{username}`` except the two fixed routes beside it, so ``GET /v1/users/login`` is a 405 naming POST
rather than a lookup of a user called "login"."""


@routes.post("/v1/users/login")
@doc(
    "Log in with Basic credentials; returns a bearer token",
    request=LoginBody,
    body_required=False,
    responses={200: LoginResponse},
    errors=(429, 503),
    basic_auth=True,
    tags=["users"],
)
async def login(request: web.Request) -> web.Response:
    """Basic credentials in, bearer token out; ``new_password`` is required on the first login.

    429 (1015) while the user or the client address has too many wrong logins; 503 (1016) when too many password
    checks are already waiting."""
    metrics = request.app[METRICS_KEY]
    try:
        body = validate(LoginBody, await read_json(request, required=False))
        address = client_address(request, request.app[WEB_SETTINGS_KEY].trusted_proxies)
        issued = await request.app[AUTH_KEY].login(request.headers.get("Authorization"), body.new_password, address)
    except ApiError as exc:
        metrics.logins.labels(str(exc.code.code)).inc()
        raise
    metrics.logins.labels("ok").inc()
    payload = {"users": [{"token": issued.token, "expires_after": issued.expires_after}]}
    return ok(request, payload, headers=_WWW_AUTHENTICATE)


@routes.post("/v1/users/logout")
@doc("Revoke every token of the caller", tags=["users"])
async def logout(request: web.Request) -> web.Response:
    """Revoke every token of the caller."""
    await request.app[AUTH_KEY].logout(principal(request).username)
    return ok(request)


@routes.post("/v1/users")
@doc(
    "Create a ROLE_USER user",
    request=CreateUserBody,
    responses={201: UsersResponse},
    errors=(409, 503),
    admin=True,
    tags=["users"],
)
async def create_user(request: web.Request) -> web.Response:
    """ROLE_ADMIN only; new users are ROLE_USER (only ``admin`` is ROLE_ADMIN) and need no password change."""
    require_admin(request)
    body = validate(CreateUserBody, await read_json(request))
    if not await request.app[AUTH_KEY].create_user(body.username, body.password):
        raise ApiError(ErrorCode.RESOURCE_EXISTS, f"user {body.username!r} already exists")
    return ok(request, {"users": [{"username": body.username}]}, status=201)


def _target(request: web.Request) -> str:
    """``{username}`` from the path, when the caller may act on it: itself, or anyone for ROLE_ADMIN."""
    username = request.match_info["username"].lower()
    caller = principal(request)
    if not caller.is_admin and caller.username != username:
        raise ApiError(ErrorCode.ACCESS_DENIED, "only ROLE_ADMIN can act on other users")
    return validate_username(username)


def validate_username(username: str) -> str:
    """The normalised (lower-case) name; a name no user can have is 1006, like a missing one."""
    try:
        return _USERNAME.validate_python(username)
    except ValidationError:
        raise ApiError(ErrorCode.NOT_FOUND, "no such user") from None


@routes.get(USER_PATH)
@doc("Get a user", responses={200: UserDetailsResponse}, errors=(403,), tags=["users"])
async def get_user(request: web.Request) -> web.Response:
    username = _target(request)
    user = await request.app[AUTH_KEY].storage.get_user(username)
    if user is None:
        raise ApiError(ErrorCode.NOT_FOUND, "no such user")
    return ok(request, {"users": [{"ROLES": user.role.value, "username": user.username}]})


@routes.put(USER_PATH)
@doc(
    "Change a password (your own needs current_password)",
    request=UpdateUserBody,
    responses={200: UsersResponse},
    errors=(403, 429, 503),
    tags=["users"],
)
async def update_user(request: web.Request) -> web.Response:
    """Change a password and revoke the user's other tokens (the original kept them; reference §2.2).

    One's own password needs ``current_password`` (missing: 400/1008; wrong: 401/1005, counted like a wrong
    login), and the token used for the change stays valid.  ROLE_ADMIN sets another user's password without it,
    and every token of that user is revoked.
    """
    username = _target(request)
    body = validate(UpdateUserBody, await read_json(request))
    caller = principal(request)
    auth = request.app[AUTH_KEY]
    if caller.username != username:
        await auth.reset_password(username, body.password)
    elif body.current_password is None:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "current_password is required to change your own password")
    else:
        address = client_address(request, request.app[WEB_SETTINGS_KEY].trusted_proxies)
        await auth.change_own_password(caller, body.current_password, body.password, address)
    return ok(request, {"users": [{"username": username}]})


@routes.delete(USER_PATH)
@doc("Delete a user", responses={200: UsersResponse}, errors=(400,), admin=True, tags=["users"])
async def delete_user(request: web.Request) -> web.Response:
    """ROLE_ADMIN only; the user's tokens die with it (rows deleted, this process's cache evicted)."""
    require_admin(request)
    username = validate_username(request.match_info["username"])
    if username == DEFAULT_ADMIN:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "the admin user cannot be deleted")
    auth = request.app[AUTH_KEY]
    if not await auth.storage.delete_user(username):
        raise ApiError(ErrorCode.NOT_FOUND, "no such user")
    auth.forget(username)
    return ok(request, {"users": [{"username": username}]})
