"""Field types the contract's structs share: what a value must look like to cross the bus at all.

Checks that answer their own On-Prem code (a recipient that is not a wa_id is 1013, a message id too long 1006)
stay with the handler; these only refuse what no handler could use (1008 empty or missing, 1009 wrong shape).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
"""A required string; ``""`` counts as missing (1008), as a field sent as ``null`` does in webapp."""

WaIdText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{5,20}$")]
"""A WhatsApp id: 5 to 20 digits."""

JsonObject = dict[str, Any]
"""A JSON object whose shape another schema owns (webapp's request models, ``shared.appsettings``,
``shared.profiles``): the bus carries it as is, and the receiving service validates it against that schema."""
