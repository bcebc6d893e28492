"""URLs as a browser sends them: a pool scraped from the web holds alt-text-era URLs with
spaces, quotes and non-ASCII characters that browsers percent-encode (WHATWG URL Standard,
"percent-encode sets"), so we encode them the same way instead of dropping them as ``bad_url``.

Only the characters the standard encodes are touched: an existing ``%XX`` stays as it is
(no re-quoting, no decoding), so the server sees the request a browser would send.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from curate.net.errors import Refused

# WHATWG URL Standard, section 1.3: the C0 control percent-encode set is U+0000-U+001F and
# everything above U+007E; the path and (special-scheme) query sets add these.
_PATH_EXTRA = frozenset(' "#<>?`{}')
_QUERY_EXTRA = frozenset(" \"#<>'")
_USERINFO_EXTRA = _PATH_EXTRA | frozenset("/:;=@[\\]^|")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_EDGE = "".join(chr(c) for c in range(0x21))  # C0 controls and space, stripped at both ends
# Hosts the WHATWG IPv4 parser reads as an address (``127.1``, ``0x7f.1``, ``2130706433``):
# a browser connects to the address, so the policy must see the address, not a "name".
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$")


@dataclass(frozen=True)
class Target:
    """One request target: ``url`` is what goes on the wire; ``host`` is ASCII (IDNA),
    lower case, an IPv6 address without brackets."""

    url: str
    scheme: str
    host: str
    port: int


def resolve(url: str | None, base_url: str | None = None) -> str:
    """``url`` joined to ``base_url`` when it has no scheme (``input.serve`` corpora)."""
    if not url or not url.strip(_EDGE):
        raise Refused("bad_url", "empty URL")
    url = _TAB_NEWLINE.sub("", url.strip(_EDGE))
    if base_url and "://" not in url:
        url = urljoin(base_url, url)
    return url


def scheme_of(url: str) -> str:
    """The lower-case scheme, or ``bad_url`` when there is none."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise Refused("bad_url", f"no scheme in {url[:200]!r}")
    return scheme


def browser_target(url: str) -> Target:
    """Percent-encode ``url`` (http or https) as a browser would; ``bad_url`` when it cannot be."""
    url = url.replace("\\", "/")  # special schemes treat a backslash as a slash
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise Refused("bad_url", f"{err}: {url[:200]!r}") from None
    scheme = parts.scheme.lower()
    host = _ascii_host(parts.hostname or "", url)
    port = port or (443 if scheme == "https" else 80)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    if userinfo:
        user, colon, password = userinfo.partition(":")
        netloc = _encode(user, _USERINFO_EXTRA) + colon + _encode(password, _USERINFO_EXTRA) + "@" + netloc
    path = _encode(parts.path or "/", _PATH_EXTRA)
    query = "?" + _encode(parts.query, _QUERY_EXTRA) if parts.query or url.split("#", 1)[0].endswith("?") else ""
    return Target(f"{scheme}://{netloc}{path}{query}", scheme, host, port)  # the fragment is never sent


def _ascii_host(host: str, url: str) -> str:
    if not host:
        raise Refused("bad_url", f"no host in {url[:200]!r}")
    host = host.rstrip(".") if host.endswith(".") and not host.endswith("..") else host
    if _NUMERIC_HOST.match(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host.rstrip(".")))
        except OSError:
            raise Refused("bad_url", f"invalid IPv4 address {host!r}") from None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as err:
        raise Refused("bad_url", f"host {host!r} is not a valid international domain name ({err})") from None


def _encode(text: str, extra: frozenset[str]) -> str:
    if text.isascii() and not any(c in extra or c < " " or c == "\x7f" for c in text):
        return text  # the common case: nothing to encode
    return "".join(
        "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")) if c in extra or not " " < c < "\x7f" else c
        for c in text
    )
