"""The HTTP(S) connections of a download: http(s) only, and never slower than a minimum rate.

:func:`make_opener` builds a :mod:`urllib.request` opener that

* speaks http and https only: it has no ftp, file or data handler, and a redirect to anything else is
  refused (:class:`RedirectRefused`, naming the URL asked for and where it was sent);
* remembers where redirects led (:class:`HttpOnlyRedirects` ``chain``), so that an error can name the
  URL that failed, not only the one asked for (:func:`where`);
* reads every response through a :class:`RateGuard`: the socket timeout bounds one silent read, the
  guard a connection that trickles (a byte a second never trips a timeout, and headers can trickle as
  well as the body): less than ``min_rate`` bytes a second over any ``window`` seconds raises
  :class:`TooSlowError` (a :class:`TimeoutError`).
"""
from __future__ import annotations

import http.client
import http.cookiejar
import io
import time
import urllib.parse
import urllib.request

from pipelines.core.errors import UserError

MIN_RATE = 1024.0  # bytes a second, averaged over --timeout seconds: slower is a stalled download


class TooSlowError(TimeoutError):
    """A connection that delivered less than the minimum rate over the last window (headers or body)."""


class RateGuard:
    """At least ``min_rate`` bytes a second, averaged over every ``window`` seconds of one connection."""

    def __init__(self, min_rate: float, window: float, clock=time.monotonic):
        self.min_rate, self.window, self.clock = min_rate, window, clock
        self.total = 0
        self.marks = [(clock(), 0)]  # (time, bytes so far), about window / 8 apart

    def received(self, n: int) -> None:
        now = self.clock()
        self.total += n
        if now - self.marks[-1][0] >= self.window / 8:
            self.marks.append((now, self.total))
        while len(self.marks) > 1 and self.marks[1][0] <= now - self.window:
            del self.marks[0]
        since, before = self.marks[0]
        if now - since >= self.window and self.total - before < self.min_rate * self.window:
            raise TooSlowError(f"too slow: {self.total - before} bytes in the last {now - since:.0f} s, under the "
                               f"minimum of {self.min_rate:g} bytes/s over {self.window:g} s (--timeout)")


class _GuardedRaw(io.RawIOBase):
    """The socket file of one response, every read counted by its :class:`RateGuard`."""

    def __init__(self, inner, guard: RateGuard):
        super().__init__()
        self.inner, self.guard = inner, guard

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.inner.fileno()

    def readinto(self, buffer) -> int:
        n = self.inner.readinto1(buffer)  # one receive at most: each is counted as it arrives
        self.guard.received(n or 0)
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


def _guarded_response(guard_factory):
    def response(sock, *args, **kwargs):
        answer = http.client.HTTPResponse(sock, *args, **kwargs)
        answer.fp = io.BufferedReader(_GuardedRaw(answer.fp, guard_factory()))  # before a byte is read
        return answer
    return response


class _GuardedConnections:
    """Mixed into urllib's HTTP(S) handlers: each connection's response is read through a rate guard."""

    def __init__(self, guard_factory, **kwargs):
        super().__init__(**kwargs)
        self.guard_factory = guard_factory

    def do_open(self, http_class, req, **kwargs):
        def connection(host, **options):
            conn = http_class(host, **options)
            conn.response_class = _guarded_response(self.guard_factory)
            return conn
        return super().do_open(connection, req, **kwargs)


class _GuardedHTTPHandler(_GuardedConnections, urllib.request.HTTPHandler):
    pass


class _GuardedHTTPSHandler(_GuardedConnections, urllib.request.HTTPSHandler):
    pass


class RedirectRefused(UserError):
    """A redirect to anything but http(s)."""


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only, and remembers where they led (``chain``) for the errors."""

    def __init__(self):
        super().__init__()
        self.chain: list[str] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            fp.close()
            raise RedirectRefused(f"{req.full_url} redirected (HTTP {code}) to {newurl!r}: only http(s) URLs are "
                                  "followed; download the archive by hand and pass it with --archive PATH")
        self.chain.append(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def make_opener(cookies: http.cookiejar.CookieJar, redirects: HttpOnlyRedirects, min_rate: float,
                window: float) -> urllib.request.OpenerDirector:
    """An opener that speaks http(s) only (proxies from the environment, cookies, the rate guard)."""
    opener = urllib.request.OpenerDirector()
    guard = lambda: RateGuard(min_rate, window)  # noqa: E731 - one guard per connection
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _GuardedHTTPHandler(guard),
                    _GuardedHTTPSHandler(guard), urllib.request.HTTPDefaultErrorHandler(), redirects,
                    urllib.request.HTTPErrorProcessor(), urllib.request.HTTPCookieProcessor(cookies)):
        opener.add_handler(handler)
    return opener


def where(url: str, redirects: HttpOnlyRedirects | None) -> str:
    """``url``, and where its redirects led, for an error message."""
    return f"{url} (redirected to {redirects.chain[-1]})" if redirects is not None and redirects.chain else url
