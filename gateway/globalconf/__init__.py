"""The federation's global configuration: model, signed format, and where a gateway gets it."""

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
from gateway.globalconf.source import (
    GlobalConfRollback,
    GlobalConfSource,
    GlobalConfUnavailable,
    load_anchor,
    save_anchor,
)

__all__ = [
    "Anchor",
    "GlobalConf",
    "GlobalConfError",
    "GlobalConfRollback",
    "GlobalConfSettings",
    "GlobalConfSource",
    "GlobalConfUnavailable",
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
    "load_anchor",
    "save_anchor",
    "sign_globalconf",
    "verify_signed_globalconf",
]
