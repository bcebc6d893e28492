"""Conditional S3 requests (``If-None-Match: *``, ``If-Match: <etag>``), signed with SigV4.

pyarrow's S3 filesystem cannot send conditional writes, and the run lock on a store needs
them: "create unless it exists" and "replace only the version I read". Credentials and endpoint
come from the same environment as :mod:`curate.storage`; requests use path-style URLs.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import urllib.parse

PRECONDITION_FAILED = 412


class S3RequestError(OSError):
    """A refused request other than a failed precondition (its status and the server's message)."""


def _endpoint(region: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(os.environ.get("AWS_ENDPOINT_URL") or f"https://s3.{region}.amazonaws.com")


def request(method: str, bucket_key: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """Send one signed request for ``bucket/key``; returns ``(status, response headers, body)``.
    Statuses other than 2xx, 404 and 412 raise :class:`S3RequestError`."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = _endpoint(region)
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    path = urllib.parse.quote(f"{endpoint.path.rstrip('/')}/{bucket_key}", safe="/-_.~")
    signed = {"host": endpoint.netloc, "x-amz-date": stamp, "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
              **{name.lower(): value for name, value in (headers or {}).items()}}
    if os.environ.get("AWS_SESSION_TOKEN"):
        signed["x-amz-security-token"] = os.environ["AWS_SESSION_TOKEN"]
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        signed["authorization"] = _authorization(method, path, signed, key, secret, region, stamp, day)
    connection_type = http.client.HTTPSConnection if endpoint.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(endpoint.hostname, endpoint.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=signed)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    if response.status >= 300 and response.status not in (404, PRECONDITION_FAILED):
        raise S3RequestError(f"s3://{bucket_key}: {method} refused with HTTP {response.status}: {text[:200]!r}")
    return response.status, {name.lower(): value for name, value in response.getheaders()}, text


def _authorization(method: str, path: str, headers: dict[str, str], key: str, secret: str, region: str,
                   stamp: str, day: str) -> str:
    names = sorted(headers)
    canonical = "\n".join([method, path, "", "".join(f"{n}:{headers[n].strip()}\n" for n in names), ";".join(names),
                           headers["x-amz-content-sha256"]])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
