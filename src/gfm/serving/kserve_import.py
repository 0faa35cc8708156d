"""Import KServe without letting it read this process's command line.

``kserve.model_server`` (KServe 0.21) calls ``parse_known_args()`` on
``sys.argv`` at import time, and argparse accepts abbreviations, so an
option of ``gfm serve`` or of pytest (``--timeout`` abbreviates
``--timeout-keep-alive``) would silently change KServe's defaults. Modules
of this package import ``kserve`` from here instead.
"""

from __future__ import annotations

import sys

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve
    import kserve.errors
    import kserve.model_server
finally:
    sys.argv = _argv

__all__ = ["kserve"]
