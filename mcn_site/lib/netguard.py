"""Outbound URLs a user typed (webhooks): refuse the ones that would reach inside our network (SSRF).

`check_public_url` is the save-time check; `resolve_public_url` is the same check returning the
addresses it approved, so a caller can connect to exactly those (a host name that resolves to a
public address when saved and to 127.0.0.1 a minute later, DNS rebinding, never gets through).

Always refused: schemes other than http/https, a user name or password in the URL, and addresses
that are never a legitimate receiver: unspecified (0.0.0.0, ::), link-local (169.254.0.0/16 with the
cloud metadata service at 169.254.169.254, fe80::/10), multicast, reserved and broadcast.
Refused unless `allow_private` (on-prem receivers, tests): loopback and private ranges (10/8,
172.16/12, 192.168/16, 100.64/10, fc00::/7, ...). IPv6 forms that carry an IPv4 address
(::ffff:a.b.c.d, 64:ff9b::a.b.c.d, 2002:aabb:ccdd::/48) are judged by that IPv4 address.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SETTING_HINT = "set MCN_WEBHOOK_ALLOW_PRIVATE=1 to allow receivers on your own network"


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why this address may not be called, or None."""
    ip = _embedded_ipv4(ip)
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address (the cloud metadata service lives there)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:  # before "reserved": ::1 lies in the reserved ::/8
        return None if allow_private else f"a loopback address ({_SETTING_HINT})"
    if ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a reserved address"
    if not allow_private and not ip.is_global:
        return f"a private address ({_SETTING_HINT})"
    return None


def resolve_public_url(url: str, *, allow_private: bool) -> list[str]:
    """Every address `url`'s host resolves to, if every one of them may be called.

    Raises ValidationError: code "forbidden" for a URL that must never be called as it is,
    "unresolvable" when the host name does not resolve now (which may pass later).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise ValidationError(f"“{url}” is not a valid URL: {error}.", code="forbidden") from None
    if parts.scheme not in {"http", "https"}:
        raise ValidationError("Only http:// and https:// URLs can receive webhooks.", code="forbidden")
    # "http://user@host" and "http://good.example\@127.0.0.1" are parsed differently by different
    # libraries; we refuse both rather than guess which host one of them would reach.
    if "@" in parts.netloc:
        raise ValidationError("A webhook URL may not contain a user name or password (user@host).", code="forbidden")
    host = parts.hostname
    if not host:
        raise ValidationError("The URL has no host name.", code="forbidden")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ValidationError(f"The host “{host}” could not be resolved: {error}.", code="unresolvable") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = sockaddr[0].split("%", 1)[0]  # drop an IPv6 zone id (fe80::1%eth0)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ValidationError(f"The host “{host}” has no address.", code="unresolvable")
    for address in addresses:
        why = _refusal(ipaddress.ip_address(address), allow_private=allow_private)
        if why:
            raise ValidationError(
                f"Webhooks cannot be sent to {host}: it resolves to {address}, {why}.", code="forbidden"
            )
    return addresses


def check_public_url(url: str, *, allow_private: bool) -> None:
    """Raise ValidationError unless `url` is http(s), has no userinfo and resolves only to callable addresses."""
    resolve_public_url(url, allow_private=allow_private)
