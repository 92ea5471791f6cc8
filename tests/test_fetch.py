"""URL fetching and URL/feed reading against real local HTTP servers on 127.0.0.x only."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import index.fetch
from bot.errors import ReadError
from index.article import Article, ReadFailure, stable_id
from index.fetch import fetch, forbidden_kind
from index.read import iter_articles

# -- a small local web site --------------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


class Site:
    """A threaded http.server on one loopback address; routes are set by each test."""

    def __init__(self, host: str) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # lets slow handlers finish at teardown
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                site.requests.append((self.path, dict(self.headers.items())))
                route = site.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                if route.handler is not None:
                    route.handler(self)
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if route.send_length:
                    self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def add(self, path: str, body: bytes | str = b"", **options: object) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = Route(body=data, **options)  # type: ignore[arg-type]
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.add(path, status=status, headers={"Location": location})

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def open_settings(settings):
    """Settings that may fetch from this machine (the local test servers)."""
    return settings.model_copy(update={"allow_private_urls": True, "fetch_timeout": 10.0})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ARTICLE_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<title>Council votes to rebuild the old bridge | Riverside Courier</title>
<meta property="og:site_name" content="Riverside Courier">
<meta name="author" content="Jo Marsh">
<meta property="article:published_time" content="2024-02-05T09:00:00Z">
</head><body>
<nav><a href="/">Home</a> <a href="/local">Local</a></nav>
<article>
<h1>Council votes to rebuild the old bridge</h1>
<p>The town council voted on Monday to rebuild the old stone bridge over the river, after
engineers found cracks in two of its arches during a routine inspection last autumn.</p>
<p>The work will cost about four million pounds and take eighteen months, the council said,
with a temporary footbridge installed so that pedestrians can still cross during the works.</p>
<p>Local businesses welcomed the decision but asked for the road closure to be kept as short
as possible, since many of them depend on traffic crossing from the other bank.</p>
<p>{marker}</p>
</article>
<footer>Riverside Courier. All rights reserved.</footer>
</body></html>
"""


def article_page(marker: str) -> str:
    return ARTICLE_PAGE.replace("{marker}", marker)


def summary_feed(links: list[str]) -> str:
    items = "".join(
        f"""<item><title>Story {number}</title><link>{link}</link>
        <pubDate>Mon, 05 Feb 2024 10:0{number}:00 +0000</pubDate>
        <description>Teaser {number}: the council voted.</description></item>"""
        for number, link in enumerate(links, start=1)
    )
    return f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Courier feed</title>
    <link>http://example.invalid/</link><description>d</description>{items}</channel></rss>"""


# -- fetch ------------------------------------------------------------------------------------


def test_fetch_returns_body_type_and_sends_a_user_agent(site, open_settings):
    url = site.add("/page", "héllo", content_type="text/plain; charset=utf-8")
    fetched = fetch(url, open_settings)
    assert (fetched.status, fetched.url, fetched.content_type) == (200, url, "text/plain")
    assert fetched.content == "héllo".encode() and fetched.encoding == "utf-8"
    path, headers = site.requests[-1]
    assert path == "/page" and headers["User-Agent"].startswith("newsbot/")
    assert headers["Host"] == f"127.0.0.1:{site.port}"


def test_private_address_refused_by_default_and_nothing_is_sent(site, settings):
    url = site.add("/page", "secret")
    with pytest.raises(ReadError) as caught:
        fetch(url, settings)
    message = str(caught.value)
    assert url in message and "NEWSBOT_ALLOW_PRIVATE_URLS=true" in message
    assert "loopback" in message
    assert site.requests == []
    with pytest.raises(ReadError, match="NEWSBOT_ALLOW_PRIVATE_URLS"):
        fetch(f"http://localhost:{site.port}/page", settings)
    assert site.requests == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.10", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:a00:1::1", "private"),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_forbidden_address_kinds(address, kind):
    assert forbidden_kind(ipaddress.ip_address(address)) == kind


def test_non_http_schemes_are_refused(open_settings):
    for url in ("ftp://127.0.0.1/a.txt", "file:///etc/passwd", "gopher://x/"):
        with pytest.raises(ReadError, match="only http and https"):
            fetch(url, open_settings)


def test_http_errors_name_the_url(site, open_settings):
    missing = site.url("/missing")
    with pytest.raises(ReadError, match="HTTP 404") as caught:
        fetch(missing, open_settings)
    assert missing in str(caught.value)
    broken = site.add("/broken", "oops", status=500)
    with pytest.raises(ReadError, match="HTTP 500"):
        fetch(broken, open_settings)


def test_connection_refused_and_dns_failure(open_settings, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/x"
    with pytest.raises(ReadError, match="cannot connect") as caught:
        fetch(url, open_settings)
    assert url in str(caught.value)

    def no_dns(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(index.fetch.socket, "getaddrinfo", no_dns)
    with pytest.raises(ReadError, match="cannot resolve") as caught:
        fetch("https://news.invalid/story", open_settings)
    assert "https://news.invalid/story" in str(caught.value)


def test_timeout_is_a_read_error(site, open_settings):
    def slow(handler: BaseHTTPRequestHandler) -> None:
        site.release.wait(10)

    url = site.add("/slow", handler=slow)
    quick = open_settings.model_copy(update={"fetch_timeout": 0.5})
    with pytest.raises(ReadError, match="timed out") as caught:
        fetch(url, quick)
    assert url in str(caught.value) and "NEWSBOT_FETCH_TIMEOUT" in (caught.value.hint or "")


def test_redirects_followed_up_to_the_limit(site, open_settings):
    site.add("/final", "arrived", content_type="text/plain")
    site.redirect("/r3", "/final")  # relative
    site.redirect("/r2", site.url("/r3"), status=301)
    start = site.redirect("/r1", "r2", status=307)  # relative to the path
    three = open_settings.model_copy(update={"max_redirects": 3})
    fetched = fetch(start, three)
    assert fetched.url == site.url("/final") and fetched.content == b"arrived"
    two = open_settings.model_copy(update={"max_redirects": 2})
    with pytest.raises(ReadError, match="too many redirects") as caught:
        fetch(start, two)
    assert "NEWSBOT_MAX_REDIRECTS" in (caught.value.hint or "") and start in str(caught.value)
    zero = open_settings.model_copy(update={"max_redirects": 0})
    with pytest.raises(ReadError, match="too many redirects"):
        fetch(start, zero)


def test_redirect_to_another_scheme_is_refused(site, open_settings):
    start = site.redirect("/to-file", "file:///etc/passwd")
    with pytest.raises(ReadError, match="only http and https") as caught:
        fetch(start, open_settings)
    assert "file:///etc/passwd" in str(caught.value)


def test_each_redirect_hop_is_checked(site, settings, monkeypatch):
    """A 'public' site (stood in for by 127.0.0.2) redirecting to an internal one is refused."""
    public = Site("127.0.0.2")
    try:
        real_kind = index.fetch.forbidden_kind
        monkeypatch.setattr(
            index.fetch,
            "forbidden_kind",
            lambda address: None if str(address) == "127.0.0.2" else real_kind(address),
        )
        site.add("/internal", "secret")
        public.add("/hello", "hello", content_type="text/plain")
        assert fetch(public.url("/hello"), settings).content == b"hello"
        start = public.redirect("/go", site.url("/internal"))
        with pytest.raises(ReadError, match="NEWSBOT_ALLOW_PRIVATE_URLS") as caught:
            fetch(start, settings)
        assert site.url("/internal") in str(caught.value)
        assert site.requests == []
    finally:
        public.close()


def test_connection_goes_to_the_checked_address_with_the_original_host(
    site, open_settings, monkeypatch
):
    """The host is resolved once and the checked address is the one connected to."""
    calls: list[str] = []

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list[object]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(str(port))))]

    monkeypatch.setattr(index.fetch.socket, "getaddrinfo", resolve)
    site.add("/page", "pinned", content_type="text/plain")
    fetched = fetch(f"http://news.test:{site.port}/page", open_settings)
    assert fetched.content == b"pinned" and fetched.url == f"http://news.test:{site.port}/page"
    assert calls[0] == "news.test"
    assert all(ipaddress.ip_address(host) for host in calls[1:])  # only the pinned literal
    assert site.requests[-1][1]["Host"] == f"news.test:{site.port}"


def test_download_size_cap(site, open_settings):
    small = open_settings.model_copy(update={"max_download_bytes": 1000})
    declared = site.add("/declared", b"x" * 5000, content_type="text/plain")
    streamed = site.add("/streamed", b"y" * 5000, content_type="text/plain", send_length=False)
    for url in (declared, streamed):
        with pytest.raises(ReadError, match="NEWSBOT_MAX_DOWNLOAD_BYTES") as caught:
            fetch(url, small)
        assert url in str(caught.value) and "1000 bytes" in str(caught.value)
    assert fetch(streamed, open_settings).content == b"y" * 5000


# -- reading URLs ------------------------------------------------------------------------------


def test_feed_with_summaries_gets_full_articles_from_linked_pages(site, open_settings):
    links = [site.add(f"/story/{n}", article_page(f"Marker number {n}.")) for n in (1, 2)]
    links.append(site.url("/story/gone"))  # 404: falls back to the teaser
    feed = site.add("/feed.xml", summary_feed(links), content_type="application/rss+xml")
    items = list(iter_articles([feed], open_settings))
    assert all(isinstance(item, Article) for item in items), items
    one, two, gone = items
    assert "engineers found cracks" in one.body and "Marker number 1." in one.body
    assert "Marker number 2." in two.body and "Teaser" not in two.body
    assert gone.body == "Teaser 3: the council voted."
    assert [a.title for a in items] == ["Story 1", "Story 2", "Story 3"]
    assert one.url == links[0] and one.id == stable_id("url", links[0])
    assert one.source == "Courier feed" and one.author == "Jo Marsh"
    assert one.published_at is not None and one.published_at.isoformat() == (
        "2024-02-05T10:01:00+00:00"
    )


def test_feed_full_text_fetching_can_be_turned_off(site, open_settings):
    link = site.add("/story/1", article_page("Marker."))
    feed = site.add("/feed", summary_feed([link]), content_type="text/xml")
    no_fetch = open_settings.model_copy(update={"fetch_full_articles": False})
    [article] = list(iter_articles([feed], no_fetch))
    assert isinstance(article, Article) and article.body == "Teaser 1: the council voted."
    assert [path for path, _ in site.requests] == ["/feed"]


def test_feed_url_refused_without_allow_private_urls(site, settings):
    feed = site.add("/feed.xml", summary_feed([site.url("/x")]), content_type="application/rss+xml")
    [failure] = list(iter_articles([feed], settings))
    assert isinstance(failure, ReadFailure) and failure.location == feed
    assert "NEWSBOT_ALLOW_PRIVATE_URLS=true" in failure.message
    assert site.requests == []


def test_page_json_and_text_urls(site, open_settings):
    page = site.add("/news/bridge", article_page("Page marker."))
    data = site.add(
        "/api/articles",
        '{"articles": [{"id": "j1", "title": "J", "body": "From JSON."}]}',
        content_type="application/json",
    )
    text = site.add("/notes.txt", "date 2024-02-07 From text.", content_type="text/plain")
    image = site.add("/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00", content_type="image/png")
    # Text, yet an image: any image/*, audio/*, video/* or font/* is not an article.
    svg = site.add("/logo.svg", "<svg><text>Logo</text></svg>", content_type="image/svg+xml")
    linked = site.add("/ld", '{"id": "ld1", "body": "Linked."}', content_type="application/ld+json")
    html, from_json, from_text, failure, not_svg, from_ld = list(
        iter_articles([page, data, text, image, svg, linked], open_settings)
    )
    assert isinstance(html, Article) and "Page marker." in html.body
    assert html.title.startswith("Council votes to rebuild the old bridge")
    assert html.url == page and html.id == stable_id("url", page)
    assert html.source == "Riverside Courier"
    assert isinstance(from_json, Article) and from_json.id == "j1"
    assert isinstance(from_text, Article) and from_text.body == "From text."
    assert from_text.url == text and from_text.id == stable_id("url", text)
    assert isinstance(failure, ReadFailure) and "image/png" in failure.message
    assert isinstance(not_svg, ReadFailure) and "not an article" in not_svg.message
    assert isinstance(from_ld, Article) and from_ld.body == "Linked."


def test_unreachable_url_fails_alone_and_the_rest_is_read(site, open_settings, tmp_path):
    good = site.add("/ok", article_page("Reachable."))
    local = tmp_path / "local.txt"
    local.write_text("Local text.", encoding="utf-8")
    dead = f"http://127.0.0.1:{closed_port()}/story"
    missing = site.url("/missing")
    items = list(iter_articles([dead, good, missing, str(local)], open_settings))
    assert [type(item) for item in items] == [ReadFailure, Article, ReadFailure, Article]
    assert items[0].location == dead and "cannot connect" in items[0].message
    assert items[2].location == missing and "404" in items[2].message


def test_redirect_limit_when_reading_urls(site, open_settings):
    site.redirect("/loop", "/loop")
    [failure] = list(iter_articles([site.url("/loop")], open_settings))
    assert isinstance(failure, ReadFailure) and "too many redirects" in failure.message


def test_download_cap_when_reading_urls(site, open_settings):
    big = site.add("/big", article_page("x" * 5000))
    small = open_settings.model_copy(update={"max_download_bytes": 2000})
    [failure] = list(iter_articles([big], small))
    assert isinstance(failure, ReadFailure)
    assert "NEWSBOT_MAX_DOWNLOAD_BYTES" in failure.message
