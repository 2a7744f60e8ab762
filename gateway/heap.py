"""Freed large buffers go back to the operating system (glibc's malloc), so memory returns after load.

Measured with bench/overload.py (48 concurrent 9 MiB requests, twice): gw-a grew from 114 MB
to 686 MB and kept 432 MB after the first burst and 790 MB after the second.  glibc serves an
allocation above its mmap threshold (128 KiB at start) with its own mapping, returned to the
system on free; but each time such a block is freed it raises the threshold to that block's
size (up to 32 MiB), so from then on 9 MiB bodies and their copies come from the heap, whose
free space is rarely at its top and so is kept.  Fixing the threshold (mallopt(3): setting it
turns the adjustment off) keeps large buffers in their own mappings: with it, RSS came back to
within 30 MB of its baseline after most bursts (docs/resilience.md, "Overload").  Python's own
small objects (pymalloc arenas) are unaffected.  An operator's MALLOC_MMAP_THRESHOLD_ in the
environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Final

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES: Final = 128 * 1024
"""glibc's own initial threshold: a message body or any copy of it is far above it."""
_M_MMAP_THRESHOLD: Final = -3
"""mallopt's parameter number (glibc malloc.h)."""
ENVIRONMENT_OVERRIDE: Final = "MALLOC_MMAP_THRESHOLD_"


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc or the environment sets it."""
    if ENVIRONMENT_OVERRIDE in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not done:
        log.warning("could not fix malloc's mmap threshold: memory may not return after large messages")
    return done
