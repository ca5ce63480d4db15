"""Bodies of ``/v1/users``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from webapp.schemas.base import RequestModel

USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
# Usernames are case-insensitive and stored in lower case: MySQL's default collation compares them that way
# anyway, so lower-casing everywhere makes every backend agree ("Dev" and "dev" are one user).
Username = Annotated[
    str, Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN), AfterValidator(lambda s: s.lower())
]
# The strength rule is checked by ``auth.check_password_rule`` (every place a password is set) so its message can
# list what is missing; the schema only says it.
PASSWORD_RULE = (
    "8 to 64 characters with an upper-case letter, a lower-case letter, a digit and a special character "
    "(reference §2.2); otherwise 400/1009 naming what is missing"
)
Password = Annotated[str, Field(max_length=1024, description=PASSWORD_RULE)]
CurrentPassword = Annotated[str, Field(max_length=1024, description="The caller's password now")]


class LoginBody(RequestModel):
    new_password: Password | None = None


class CreateUserBody(RequestModel):
    username: Username
    password: Password


class UpdateUserBody(RequestModel):
    password: Password
    current_password: CurrentPassword | None = None
    """Required when the caller changes its own password (400/1008 without, 401/1005 when wrong); ignored when
    ROLE_ADMIN sets another user's."""
