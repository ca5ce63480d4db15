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
# The strength rule is checked by ``auth.check_password_rule`` so its message can list what is missing.
Password = Annotated[str, Field(max_length=1024)]


class LoginBody(RequestModel):
    new_password: Password | None = None


class CreateUserBody(RequestModel):
    username: Username
    password: Password


class UpdateUserBody(RequestModel):
    password: Password
