"""Text from records and users, made safe to print: names may hold anything.

A record's name, notes or tags come from whoever made it (or from a file someone dropped in
the data folder); printed raw, an ANSI escape in a name would recolour, move or clear the
user's terminal. Every control character is shown as its Python escape instead.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``"a\\x1b[31mb"`` -> ``"a\\\\x1b[31mb"``: control characters escaped, the rest as it is."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))
