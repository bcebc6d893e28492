"""The HTTP client of the download stage: aiohttp on one event loop per worker, in a thread of
its own, so that decoding on the task's main thread never stalls the network and the network
never waits for a decode (issue 5 §1).

* Deadline: every attempt has one absolute deadline from the moment its request starts
  (connect + headers + body), enforced by cancelling the request, which closes its socket.
  Nothing is abandoned: a URL's result is whatever its attempt returned, so a completed fetch is
  never reported as a timeout. Time spent waiting for the memory budget (below) is not charged.
* Memory: a URL starts only while the bytes held (bodies being read + bodies waiting to be
  decoded) are under ``buffer_bytes``; once its headers arrive a request reserves its
  ``Content-Length`` (``max_bytes`` when unknown) before reading the body, and the reservation is
  returned when the consumer has taken the next result. Reserving whole bodies at once (never
  piecemeal) is what makes this deadlock-free: a waiting request holds no bytes.
* ``max_bytes``: a larger ``Content-Length`` is refused before the body is read (``too_large``),
  and so is a body that grows past it.
* Policy: schemes and peer addresses (:mod:`curate.net.policy`) on every hop; redirects are
  followed here, one checked hop at a time; host names resolve through :class:`PolicyResolver`,
  whose checked addresses are the only ones the connector dials (no DNS rebinding window).
* Retries: transient failures only, after :func:`curate.net.backoff.retry_delay`.

Measured against the former ``urllib`` thread pool: ``benchmarks/fetch.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import queue
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from curate.net.backoff import retry_after_seconds, retry_delay
from curate.net.errors import Refused
from curate.net.policy import BlockedAddress, NetPolicy
from curate.net.urls import Target, browser_target, resolve, scheme_of

#: Failure reasons worth another attempt later (a regular expression over reasons).
TRANSIENT_REASONS = r"^(timeout|connection_reset|http_5\d\d|http_429)$"
_TRANSIENT = re.compile(TRANSIENT_REASONS)
DEFAULT_DISALLOWED = ("noai", "noimageai", "noindex", "noimageindex")  # img2dataset's defaults
USER_AGENT = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def is_transient(reason: str | None) -> bool:
    """Failures worth another attempt later: timeouts, 5xx/429 answers, reset connections."""
    return bool(reason) and _TRANSIENT.match(reason) is not None


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = 10.0
    retries: int = 0
    threads: int = 64
    max_bytes: int = 20_000_000
    buffer_bytes: int = 256_000_000
    max_redirects: int = 10
    backoff: float = 0.5
    max_retry_wait: float = 30.0
    user_agent_token: str | None = None
    disallowed: frozenset[str] = frozenset(DEFAULT_DISALLOWED)
    base_url: str | None = None


@dataclass
class Fetched:
    """A body, or the reason (and detail) there is none."""

    body: bytes | None
    reason: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from the server's Retry-After
    status: int | None = None  # the last response's HTTP status (None: no response came)

    @property
    def outcome(self) -> str:
        """The HTTP status (``"200"``, ``"404"``), or the reason when no response came (``timeout``)."""
        return str(self.status) if self.status is not None else self.reason or "unknown"


class PolicyResolver(AbstractResolver):
    """Resolves a host name and hands the connector only the addresses the policy allows."""

    def __init__(self, policy: NetPolicy):
        self._policy = policy

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG)
        allowed: list[ResolveResult] = []
        refused: list[str] = []
        for fam, _, proto, _, sockaddr in infos:
            why = self._policy.refusal(sockaddr[0], port)
            if why is not None:
                refused.append(why)
                continue
            allowed.append(ResolveResult(hostname=host, host=sockaddr[0], port=port, family=fam, proto=proto,
                                         flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV))
        if not allowed:
            raise BlockedAddress(f"{host} resolves to {refused[0]}" if refused else f"{host} has no address")
        return allowed

    async def close(self) -> None:
        pass


class _ByteBudget:
    """Bytes held by bodies, on the event loop's thread only."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Event()

    async def wait_below_limit(self) -> None:
        while self.used >= self.limit:
            self._changed.clear()
            await self._changed.wait()

    async def reserve(self, size: int) -> None:
        # one request may always proceed alone, so a body larger than the budget cannot stall
        while self.used and self.used + size > self.limit:
            self._changed.clear()
            await self._changed.wait()
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        self._changed.set()


class Fetcher:
    """Fetches batches of URLs on its own event-loop thread; :meth:`fetch` yields results as they
    arrive. One per worker; :meth:`close` (or garbage collection, or exit) stops it."""

    def __init__(self, settings: FetchSettings, policy: NetPolicy):
        self.settings = settings
        self.policy = policy
        self._rng = random.Random()
        agent = USER_AGENT
        if settings.user_agent_token:
            agent += f" (compatible; {settings.user_agent_token}; +https://github.com/rom1504/img2dataset)"
        self._headers = {"User-Agent": agent, "Accept-Encoding": "identity"}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="curate-fetch", daemon=True)
        self._thread.start()
        self._session, self._slots, self._budget = self._call(self._open())
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._thread, self._session)

    @property
    def held_bytes(self) -> int:
        """Bytes reserved right now (for tests and benchmarks)."""
        return self._budget.used

    def close(self) -> None:
        self._finalizer()

    def fetch(self, urls: list[str | None]) -> Iterator[tuple[int, Fetched]]:
        """Yield ``(index, Fetched)`` for every URL, in completion order. A body's bytes count
        against the budget until the caller asks for the next result."""
        results: queue.SimpleQueue = queue.SimpleQueue()
        task = self._call(self._start(urls, results))
        held = 0
        try:
            for _ in urls:
                index, item = results.get()
                if isinstance(item, BaseException):
                    raise item  # a bug in this module, not a bad URL
                held = len(item.body) if item.body is not None else 0
                yield index, item
                self._release(held)
                held = 0
        finally:
            self._release(held)
            self._call(_cancel(task))  # the consumer stopped early: nothing may keep running
            while True:
                try:
                    _, item = results.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Fetched) and item.body is not None:
                    self._release(len(item.body))

    # -- event-loop side ----------------------------------------------------------------------

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _release(self, size: int) -> None:
        if size:
            self._loop.call_soon_threadsafe(self._budget.release, size)

    async def _open(self):
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.policy), limit=0)
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                        trust_env=False, timeout=aiohttp.ClientTimeout(total=None))
        return session, asyncio.Semaphore(self.settings.threads), _ByteBudget(self.settings.buffer_bytes)

    async def _start(self, urls: list[str | None], results: queue.SimpleQueue) -> asyncio.Task:
        return asyncio.ensure_future(self._batch(urls, results))

    async def _batch(self, urls: list[str | None], results: queue.SimpleQueue) -> None:
        tasks = [asyncio.ensure_future(self._one(index, url, results)) for index, url in enumerate(urls)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, index: int, url: str | None, results: queue.SimpleQueue) -> None:
        try:
            fetched = await self._with_retries(url)
        except Exception as err:  # noqa: BLE001  (a bug: handed to the consumer, which raises it)
            results.put((index, err))
            return
        results.put((index, fetched))

    async def _with_retries(self, url: str | None) -> Fetched:
        s = self.settings
        for attempt in range(s.retries + 1):
            async with self._slots:
                await self._budget.wait_below_limit()  # the decoder is behind: open nothing new
                fetched = await self._attempt(url)
            if fetched.body is not None or attempt == s.retries or not is_transient(fetched.reason):
                return fetched
            await asyncio.sleep(retry_delay(attempt, s.backoff, s.max_retry_wait, fetched.retry_after, self._rng))
        raise AssertionError("unreachable")

    async def _attempt(self, url: str | None) -> Fetched:
        s = self.settings
        reserved = 0
        try:
            target = self._target(resolve(url, s.base_url))
            async with asyncio.timeout(s.timeout) as deadline:
                for _ in range(s.max_redirects + 1):
                    async with self._session.get(yarl.URL(target.url, encoded=True), headers=self._headers,
                                                 allow_redirects=False) as response:
                        location = response.headers.get("Location")
                        if response.status in _REDIRECTS and location:
                            target = self._target(urljoin(target.url, location))
                            continue
                        refusal = self._refuse_response(response)
                        if refusal is not None:
                            refusal.status = response.status
                            return refusal
                        need = response.content_length if response.content_length is not None else s.max_bytes
                        await self._reserve_paused(deadline, need)
                        reserved = need
                        body = await self._read_body(response)
                        self._budget.release(reserved - len(body))
                        reserved = 0  # from here on the consumer releases len(body)
                        return Fetched(body, status=response.status)
                return Fetched(None, "too_many_redirects", f"more than {s.max_redirects} redirects")
        except Refused as refused:
            return Fetched(None, refused.reason, refused.detail)
        except TimeoutError:
            return Fetched(None, "timeout", f"no complete answer within {s.timeout:g}s")
        except (aiohttp.ClientError, OSError) as err:
            return Fetched(None, *classify(err))
        finally:
            if reserved:
                self._budget.release(reserved)

    def _target(self, url: str) -> Target:
        """Scheme check, browser encoding, and the address check of an IP-literal host (host
        names are checked by :class:`PolicyResolver`, which aiohttp skips for literals)."""
        self.policy.check_scheme(scheme_of(url))
        target = browser_target(url)
        with suppress(ValueError):
            ipaddress.ip_address(target.host)
            self.policy.check_address(target.host, target.port)
        return target

    def _refuse_response(self, response: aiohttp.ClientResponse) -> Fetched | None:
        status = response.status
        if not 200 <= status < 300:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
            return Fetched(None, f"http_{status}", f"HTTP {status} {response.reason}", retry_after)
        if disallowed_by_robots_tag(response.headers.getall("X-Robots-Tag", []), self.settings.user_agent_token,
                                    self.settings.disallowed):
            return Fetched(None, "x_robots_tag", "use of image disallowed by X-Robots-Tag directive")
        length = response.content_length
        if length is not None and length > self.settings.max_bytes:
            return Fetched(None, "too_large", f"body larger than {self.settings.max_bytes} bytes (Content-Length {length})")
        return None

    async def _reserve_paused(self, deadline: asyncio.Timeout, size: int) -> None:
        """Reserve ``size`` bytes; the wait (the decoder catching up) is not network time."""
        loop = asyncio.get_running_loop()
        remaining = deadline.when() - loop.time()
        deadline.reschedule(None)
        await self._budget.reserve(size)
        deadline.reschedule(loop.time() + remaining)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        # Chunks joined once at the end: a growing bytearray reallocates, and bytes() of it
        # copies the whole body again, on the thread every download shares.
        limit = self.settings.max_bytes
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Refused("too_large", f"body larger than {limit} bytes")
        return b"".join(chunks)


def disallowed_by_robots_tag(values: list[str], user_agent_token: str | None, directives: frozenset[str]) -> bool:
    """Whether an ``X-Robots-Tag`` value forbids use: ``noai, noindex`` applies to everyone,
    ``<token>: noai`` only to the crawler named ``<token>`` (Google's X-Robots-Tag syntax)."""
    if not directives:
        return False
    token = user_agent_token.strip().lower() if user_agent_token else None
    for value in values:
        scope, colon, rest = value.partition(":")
        scoped = bool(colon) and "," not in scope and " " not in scope.strip()
        if scoped and scope.strip().lower() != token:
            continue
        if {d.strip().lower() for d in (rest if scoped else value).split(",")} & directives:
            return True
    return False


_OS_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (BlockedAddress, "blocked_address"),
    (TimeoutError, "timeout"),
    ((ConnectionResetError, BrokenPipeError, ConnectionAbortedError), "connection_reset"),
    (ConnectionRefusedError, "connection_refused"),
    (socket.gaierror, "dns_error"),
)
_CLIENT_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    ((aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError), "connection_reset"),
    (aiohttp.ClientSSLError, "ssl_error"),
    (aiohttp.InvalidURL, "bad_url"),
    (aiohttp.ClientResponseError, "bad_response"),
)


def classify(err: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failed request; a connector error by the ``OSError`` it wraps."""
    for kinds, reason in _CLIENT_REASONS:
        if isinstance(err, kinds):
            return reason, str(err) or type(err).__name__
    cause = getattr(err, "os_error", None) or err.__cause__ or err
    for kinds, reason in _OS_REASONS:
        if isinstance(cause, kinds):
            return reason, str(cause) or type(cause).__name__
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return "dns_error", str(cause)
    if isinstance(err, aiohttp.ClientConnectorError):
        return "connect_error", str(cause)
    return _snake(type(err).__name__), str(err) or type(err).__name__


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def _shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread, session: aiohttp.ClientSession) -> None:
    if loop.is_closed() or not thread.is_alive():
        return
    with suppress(Exception):  # exiting: a session that will not close must not block the exit
        asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()
