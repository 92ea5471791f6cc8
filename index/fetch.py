"""Fetch one http(s) URL safely: bounded time, bounded size, bounded redirects, no internal hosts.

Anyone who can hand newsbot a URL (a Slack user, a feed's link) could otherwise make it read
internal services: each hop's host is resolved once, every address checked, and the connection made
to that checked address (Host header and TLS name kept), so DNS cannot change in between.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from index.config import FetchConfig
from index.errors import ReadError

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ACCEPT = (
    "text/html, application/xhtml+xml, application/rss+xml, application/atom+xml, "
    "application/xml;q=0.9, application/json;q=0.9, text/plain;q=0.8, */*;q=0.5"
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Fetched:
    """What a URL served. `url` is the address after redirects; `content_type` has no parameters."""

    url: str
    status: int
    content_type: str
    content: bytes
    encoding: str | None = None  # the charset the server declared, if any
    # Validators for the next conditional request (If-None-Match / If-Modified-Since).
    etag: str = ""
    last_modified: str = ""

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for the process: building one loads the CA bundle (slow)."""
    import httpx

    return httpx.create_ssl_context()


@cache
def user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"newsbot/{version('newsbot')}"
    except Exception:  # running from a checkout that was never installed
        return "newsbot/dev"


def fetch(url: str, settings: FetchConfig, headers: Mapping[str, str] | None = None) -> Fetched:
    """GET `url` and return its body, or raise ReadError with a one-line message naming the URL.

    `headers` go along (e.g. a previous Fetched's validators); a 304 comes back `not_modified`.
    `fetch_timeout` bounds the whole fetch; at most `max_redirects` hops, each checked again; a
    body past `max_download_bytes` (decompressed) is abandoned; hosts resolving to non-public
    addresses are refused unless `allow_private_urls`.
    """
    deadline = time.monotonic() + settings.fetch_timeout
    current = url
    for _ in range(settings.max_redirects + 1):
        parts = urlsplit(current)
        if parts.scheme.lower() not in ("http", "https"):
            via = "" if current == url else f" (redirected from {url})"
            raise ReadError(f"cannot fetch {current}{via}: only http and https URLs can be read")
        if not parts.hostname:
            raise ReadError(f"cannot fetch {current}: the URL has no host")
        response = _get_once(current, settings, deadline, headers or {})
        if isinstance(response, Fetched):
            return response
        next_url = urljoin(current, response)
        logger.debug("%s redirects to %s", current, next_url)
        current = next_url  # fetched only if within max_redirects
    raise ReadError(
        f"too many redirects fetching {url} (more than {settings.max_redirects})",
        hint="raise NEWSBOT_MAX_REDIRECTS if the site really needs more",
    )


def _get_once(
    url: str, settings: FetchConfig, deadline: float, extra_headers: Mapping[str, str]
) -> Fetched | str:
    """One hop. Returns the Fetched body, or the Location of a redirect."""
    import httpx as _httpx

    parsed = _httpx.URL(url)
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS want it
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(url, host, port, settings)

    headers = {
        **extra_headers,
        "Host": parsed.netloc.decode("ascii"),
        "User-Agent": user_agent(),
        "Accept": _ACCEPT,
    }
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    last_error: Exception | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        target = parsed.copy_with(host=str(address))
        try:
            # A fresh client per hop: pooled connections are keyed by address, and one must
            # never carry a request for another host name.
            with (
                _httpx.Client(
                    timeout=_httpx.Timeout(remaining),
                    follow_redirects=False,
                    trust_env=False,
                    verify=_ssl_context(),
                ) as client,
                client.stream("GET", target, headers=headers, extensions=extensions) as response,
            ):
                return _read_response(url, response, settings, deadline)
        except _httpx.ConnectError as exc:
            last_error = exc
            logger.debug("cannot connect to %s at %s: %s", url, address, exc)
        except _httpx.TimeoutException:
            raise _timed_out(url, settings) from None
        except _httpx.HTTPError as exc:
            raise ReadError(f"cannot fetch {url}: {_describe(exc)}") from None
    if last_error is None:
        raise _timed_out(url, settings)
    raise ReadError(f"cannot connect to {url}: {_describe(last_error)}")


def _timed_out(url: str, settings: FetchConfig) -> ReadError:
    return ReadError(
        f"timed out fetching {url} (after {settings.fetch_timeout:g} s)",
        hint="try again later or raise NEWSBOT_FETCH_TIMEOUT",
    )


def _read_response(
    url: str, response: httpx.Response, settings: FetchConfig, deadline: float
) -> Fetched | str:
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise ReadError(f"cannot fetch {url}: HTTP {status} redirect without a Location")
        return location
    validators = {
        "etag": response.headers.get("etag", ""),
        "last_modified": response.headers.get("last-modified", ""),
    }
    if status == 304:
        return Fetched(url=url, status=status, content_type="", content=b"", **validators)
    if status >= 400:
        reason = response.reason_phrase or ""
        raise ReadError(f"cannot fetch {url}: HTTP {status} {reason}".rstrip())
    limit = settings.max_download_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ReadError(_too_big(url, limit, f"it declares {int(declared)} bytes"))
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ReadError(_too_big(url, limit, "it sent more"))
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise _timed_out(url, settings)
    content_type = response.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    return Fetched(
        url=url,
        status=status,
        content_type=media_type,
        content=b"".join(chunks),
        encoding=response.charset_encoding,
        **validators,
    )


def _too_big(url: str, limit: int, detail: str) -> str:
    return (
        f"download from {url} is over the limit of {limit} bytes ({detail}); "
        "raise NEWSBOT_MAX_DOWNLOAD_BYTES to allow it"
    )


def _resolve(url: str, host: str, port: int, settings: FetchConfig) -> list[IPAddress]:
    """Every address `host` resolves to, all checked; the order getaddrinfo gave."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReadError(f"cannot resolve the host of {url} ({host}): {reason}") from None
    # Without an IPv6 zone index; each address once, in getaddrinfo's order.
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))
    if not addresses:
        raise ReadError(f"cannot resolve the host of {url} ({host}): no addresses")
    if not settings.allow_private_urls:
        for address in addresses:
            kind = forbidden_kind(address)
            if kind:
                raise ReadError(
                    f"refusing to fetch {url}: {host} resolves to {address}, a {kind} address; "
                    "set NEWSBOT_ALLOW_PRIVATE_URLS=true to allow it"
                )
    return addresses


def forbidden_kind(address: IPAddress) -> str | None:
    """Why `address` must not be fetched by default ("loopback", "private", ...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        teredo = address.teredo[1] if address.teredo else None
        nat64 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        embedded = address.ipv4_mapped or address.sixtofour or teredo or nat64
        if embedded is not None:
            return forbidden_kind(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, matches in checks if matches), None)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
