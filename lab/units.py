"""Units, defined once: every time in the lab is integer nanoseconds until it is shown."""

from __future__ import annotations

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

KIB = 1024
MIB = 1024 * KIB
