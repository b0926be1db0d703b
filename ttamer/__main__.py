"""``python -m ttamer``: the command line."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # interrupted while the (light) command line loads
    print("ttamer: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
