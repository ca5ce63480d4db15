"""``account.*``: registration, two-step verification and shards (reference §2.1, §2.3, §5.3)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.bus.contract.types import NonEmpty
from shared.bus.rpc import Empty, Method, Placement


class Register(msgspec.Struct, omit_defaults=True):
    cc: NonEmpty
    phone_number: NonEmpty
    method: Literal["sms", "voice"]
    cert: NonEmpty
    pin: str | None = None


class Registration(msgspec.Struct, omit_defaults=True):
    status: Literal["registered", "code_sent"]
    vname: str | None = None


class Verify(msgspec.Struct):
    code: NonEmpty


class TwoStep(msgspec.Struct):
    pin: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[0-9]{6}$")]


SHARDS_HINT = "shards must be one of 1, 2, 4, 8, 16, 32"


class SetShards(msgspec.Struct, omit_defaults=True):
    cc: NonEmpty
    phone_number: NonEmpty
    shards: int
    pin: str | None = None


class Shards(msgspec.Struct):
    shards: int


REGISTER = Method(
    "account.register",
    Register,
    Registration,
    doc='`status: "registered"` (webapp → 201) or `status: "code_sent"` with `vname` (→ 202 `{"account":[{"vname"}]}`)',
    errors="1005 bad cert, 1009, 1011 network unreachable",
)
VERIFY = Method("account.verify", Verify, Empty, doc="`{}`", errors="1005 wrong code, 1006 nothing to verify")
SET_TWO_STEP = Method(
    "account.set_two_step",
    TwoStep,
    Empty,
    doc="`{}`: the network then asks for the PIN at every registration",
    errors="1008, 1009 not 6 digits, 1011 not connected",
    placement=Placement.ANY_SHARD,
)
REMOVE_TWO_STEP = Method(
    "account.remove_two_step", Empty, Empty, doc="`{}`", errors="1011", placement=Placement.ANY_SHARD
)
GET_SHARDS = Method("account.get_shards", Empty, Shards, doc="`shards: 1`")
SET_SHARDS = Method(
    "account.set_shards",
    SetShards,
    Shards,
    doc="`shards: 1` (webapp → 201)",
    field_errors={"shards": SHARDS_HINT},
    errors='1009 not the registered number / bad count / "multiconnect is not enabled" for 2-32; 1011 not registered',
)
