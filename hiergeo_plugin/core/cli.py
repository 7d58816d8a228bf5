"""`hiergeo`, the engine's command line (no QGIS): `index build|info`, `geolocate` and `region train`.

One entry point that hands each command group to the module that owns it (index/cli.py, region/cli.py), so the
packages below do not import each other for the sake of a dispatcher. `scripts/hiergeo` runs this module; every
group keeps the same contract: one JSON object on stdout and 0, or one line on stderr and 2 (130 on Ctrl-C).
"""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Run `hiergeo <argv>` and return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["region"]:
        from .region.cli import main as region_main

        return region_main(argv)
    from .index.cli import main as index_main

    return index_main(argv)


if __name__ == "__main__":
    sys.exit(main())
