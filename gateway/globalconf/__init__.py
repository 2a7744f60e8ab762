"""The federation's global configuration: its model and signed format (sans-IO).

Where a gateway gets it — the file or download, the cache, the anchor file — is the edge
module `gateway.globalconf.source`, imported where it is used.
"""

from gateway.globalconf.model import (
    GlobalConf,
    GlobalConfError,
    GlobalConfSettings,
    GlobalGroup,
    MalformedGlobalConf,
    Member,
    OcspResponder,
    SecurityServerInfo,
    TimestampingAuthority,
    TrustedCa,
)
from gateway.globalconf.signed import (
    Anchor,
    UntrustedGlobalConf,
    anchor_from_json,
    anchor_to_json,
    globalconf_from_json,
    globalconf_to_json,
    sign_globalconf,
    verify_signed_globalconf,
)

__all__ = [
    "Anchor",
    "GlobalConf",
    "GlobalConfError",
    "GlobalConfSettings",
    "GlobalGroup",
    "MalformedGlobalConf",
    "Member",
    "OcspResponder",
    "SecurityServerInfo",
    "TimestampingAuthority",
    "TrustedCa",
    "UntrustedGlobalConf",
    "anchor_from_json",
    "anchor_to_json",
    "globalconf_from_json",
    "globalconf_to_json",
    "sign_globalconf",
    "verify_signed_globalconf",
]
