"""``python -m shared.bus.contract [--write FILE]``: print §3's table, or splice it into FILE (docs/contracts.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from shared.bus.contract.table import splice, table


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(splice(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
