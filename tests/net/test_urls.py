"""Browser-style percent-encoding (issue 5 §7: URLs with spaces were dropped as ``bad_url``)."""

from __future__ import annotations

import pytest

from curate.net.errors import Refused
from curate.net.urls import browser_target, resolve, scheme_of


@pytest.mark.parametrize(("url", "wire"), [
    ("http://example.com/a b.jpg", "http://example.com/a%20b.jpg"),
    ("http://example.com/a%20b.jpg", "http://example.com/a%20b.jpg"),  # already encoded: untouched
    ("http://example.com/100%.jpg", "http://example.com/100%.jpg"),  # a lone % stays, as in browsers
    ('http://example.com/"q"<x>`{y}`.jpg', "http://example.com/%22q%22%3Cx%3E%60%7By%7D%60.jpg"),
    ("http://example.com/caf\u00e9.jpg", "http://example.com/caf%C3%A9.jpg"),
    ("http://example.com/a.jpg?q=a b&c='d'", "http://example.com/a.jpg?q=a%20b&c=%27d%27"),
    ("http://example.com/a.jpg?", "http://example.com/a.jpg?"),
    ("http://example.com/a.jpg#frag ment", "http://example.com/a.jpg"),  # fragments are never sent
    ("HTTP://EXAMPLE.com:8080", "http://example.com:8080/"),
    ("http://example.com\\dir\\a.jpg", "http://example.com/dir/a.jpg"),
    ("http://b\u00fccher.example/x.jpg", "http://xn--bcher-kva.example/x.jpg"),
    ("http://[::1]:81/x", "http://[::1]:81/x"),
    ("http://127.1/x", "http://127.0.0.1/x"),  # the WHATWG IPv4 parser's shorthand
    ("http://2130706433/x", "http://127.0.0.1/x"),
    ("http://0x7f.0.0.1/x", "http://127.0.0.1/x"),
    ("http://u ser:p@ss@example.com/x", "http://u%20ser:p%40ss@example.com/x"),
])
def test_browser_encoding(url, wire) -> None:
    assert browser_target(url).url == wire


def test_target_fields() -> None:
    target = browser_target("https://Example.COM/a b")
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 443)
    assert browser_target("http://[::ffff:10.0.0.1]:8080/").host == "::ffff:10.0.0.1"


@pytest.mark.parametrize(("url", "detail"), [
    ("http:///x.jpg", "no host in 'http:///x.jpg'"),
    ("http://example.com:99999/", "Port out of range 0-65535: 'http://example.com:99999/'"),
    ("http://[::1/x", "Invalid IPv6 URL: 'http://[::1/x'"),
])
def test_unusable_urls_are_bad_url(url, detail) -> None:
    with pytest.raises(Refused) as caught:
        browser_target(url)
    assert (caught.value.reason, caught.value.detail) == ("bad_url", detail)


@pytest.mark.parametrize(("url", "base", "resolved"), [
    ("  http://example.com/a\tb\n.jpg \x00", None, "http://example.com/ab.jpg"),  # stripped as a browser does
    ("good/a.jpg", "http://127.0.0.1:9/", "http://127.0.0.1:9/good/a.jpg"),
    ("http://example.com/a.jpg", "http://127.0.0.1:9/", "http://example.com/a.jpg"),
])
def test_resolve(url, base, resolved) -> None:
    assert resolve(url, base) == resolved


@pytest.mark.parametrize("url", [None, "", "   "])
def test_empty_urls(url) -> None:
    with pytest.raises(Refused) as caught:
        resolve(url)
    assert (caught.value.reason, caught.value.detail) == ("bad_url", "empty URL")


def test_scheme_of() -> None:
    assert scheme_of("FILE:///etc/passwd") == "file"
    with pytest.raises(Refused) as caught:
        scheme_of("not a url")
    assert (caught.value.reason, caught.value.detail) == ("bad_url", "no scheme in 'not a url'")
