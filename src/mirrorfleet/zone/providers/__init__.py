"""DNS providers: one module each, every one a subclass of base.Provider.

provider_for() imports the provider dns.toml names only when it is asked for, so a
fleet on RFC 2136 never imports boto3 (an extra: `pip install 'mirrorfleet[route53]'`).
"""

from __future__ import annotations

from mirrorfleet.config import DnsConfig
from mirrorfleet.errors import missing_extra
from mirrorfleet.zone.providers.base import Provider


def provider_for(config: DnsConfig) -> Provider:
    """The provider dns.toml's `provider` key names, built from its settings."""
    if config.provider == "route53":
        try:
            from mirrorfleet.zone.providers import route53
        except ModuleNotFoundError as exc:
            raise missing_extra(exc, "route53") from None

        return route53.from_config(config)
    from mirrorfleet.zone.providers import rfc2136

    return rfc2136.from_config(config)
