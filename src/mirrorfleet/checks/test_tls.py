"""HTTPS on every host that serves clients (roles/tls): a certificate for the host's
public name that nginx really serves and that has time left, a private key no one
else reads, renewal scheduled, and port 80 sending clients to HTTPS. A host the
inventory keeps on plain HTTP serves its site on port 80 instead of redirecting, and
holds no certificate, key or listener on 443: each check says what is true in
either mode, so a fleet on plain HTTP runs them all too (no skips)."""

from __future__ import annotations

import shlex

INVENTORY_GROUP = ("origin", "mirrors", "monitor")
CERTIFICATE, KEY = "/etc/mirrorfleet/tls/fullchain.pem", "/etc/mirrorfleet/tls/privkey.pem"
DAYS_LEFT = 14  # docs/MONITOR.md alerts at 14 days; a deploy must leave more


def test_plain_http_redirects_to_https_or_serves_where_kept(host, site) -> None:
    got = host.check_output(
        "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://localhost/"
    )
    status, _, target = got.partition(" ")
    if site.tls == "off":
        assert status != "301", got
    else:
        assert status == "301" and target.startswith("https://"), got


def test_the_certificate_is_for_the_hosts_name(host, site) -> None:
    if site.tls == "off":
        assert not host.file(CERTIFICATE).exists
        return
    out = host.check_output(f"openssl x509 -in {CERTIFICATE} -noout -checkhost {site.name}")
    assert "does match certificate" in out, out


def test_the_certificate_has_time_left(host, site) -> None:
    if site.tls == "off":
        assert not host.file(CERTIFICATE).exists
        return
    seconds = DAYS_LEFT * 86400
    assert host.run(f"openssl x509 -in {CERTIFICATE} -noout -checkend {seconds}").rc == 0


def test_the_private_key_is_root_only(host, site) -> None:
    if site.tls == "off":
        assert not host.file(KEY).exists
        return
    key = host.file(host.check_output(f"readlink -f {KEY}"))
    assert key.exists and key.user == "root" and key.mode == 0o600


def test_nginx_serves_that_certificate_and_the_host_trusts_it(host, site) -> None:
    """What a client gets on port 443 is the file on disk (a renewal reloaded nginx),
    and it verifies with the host's trust store for the host's name."""
    if site.tls == "off":
        assert not host.socket("tcp://0.0.0.0:443").is_listening
        return
    port = site.url.rsplit(":", 1)[-1]
    served = host.check_output(
        f"openssl s_client -connect 127.0.0.1:{port} -servername {shlex.quote(site.name)} "
        "</dev/null 2>/dev/null | openssl x509 -noout -serial"
    )
    on_disk = host.check_output(f"openssl x509 -in {CERTIFICATE} -noout -serial")
    assert served == on_disk
    # any HTTP answer (a tree has no page at /) means TLS verified: curl's rc is 0
    assert host.run(f"{site.curl} -s -o /dev/null {site.url}/").rc == 0


def test_only_a_host_validated_by_dns_holds_a_dns_key(host, site, inventory_host) -> None:
    """DNS-01's key (roles/tls, RFC2136_INI) is on the hosts that use it alone: root's,
    0600, and its own key, which BIND lets write its `_acme-challenge` TXT only."""
    ini = host.file("/etc/mirrorfleet/tls/rfc2136.ini")
    by_dns = site.tls == "acme" and inventory_host.data.get("acme_challenge") == "dns-01"
    assert ini.exists == by_dns
    if by_dns:
        assert ini.user == "root" and ini.mode == 0o600
        assert f"dns_rfc2136_name = mirrorfleet-acme.{site.name}" in ini.content_string


def test_renewal_is_scheduled_where_acme_issues(host, site) -> None:
    timer = host.service("certbot.timer")
    if site.tls == "acme":
        assert timer.is_enabled and timer.is_running
        renewal = host.file("/etc/letsencrypt/renewal/mirrorfleet.conf").content_string
        assert "renew_hook = systemctl reload nginx.service" in renewal
    else:
        assert not host.file("/etc/letsencrypt/renewal/mirrorfleet.conf").exists
