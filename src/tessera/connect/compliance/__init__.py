"""Messaging compliance building blocks (database-free): normalisation and word matching.

The ``normalize`` function is not re-exported here, so that ``compliance.normalize`` stays the
module; import it from ``tessera.connect.compliance.normalize``.
"""

from tessera.connect.compliance.matcher import (
    DEFAULT_OPT_OUT_KEYWORDS,
    Action,
    Hit,
    Matcher,
    MatcherCache,
    ScanResult,
    Verdict,
    WordEntry,
    is_opt_out,
)
from tessera.connect.compliance.normalize import (
    NormalizedText,
    is_separator,
    normalize_utf8,
    normalize_with_offsets,
)

__all__ = [
    "DEFAULT_OPT_OUT_KEYWORDS",
    "Action",
    "Hit",
    "Matcher",
    "MatcherCache",
    "NormalizedText",
    "ScanResult",
    "Verdict",
    "WordEntry",
    "is_opt_out",
    "is_separator",
    "normalize_utf8",
    "normalize_with_offsets",
]
