"""Bodies of ``/v1/users``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from webapp.schemas.base import RequestModel

Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
# The strength rule is checked by ``auth.check_password_rule`` so its message can list what is missing.
Password = Annotated[str, Field(max_length=1024)]


class LoginBody(RequestModel):
    new_password: Password | None = None


class CreateUserBody(RequestModel):
    username: Username
    password: Password


class UpdateUserBody(RequestModel):
    password: Password
