"""The worker browser's only way out: a SOCKS5 proxy that pins each connection.

The request guard (url_guard.py) checks URLs, and resolves host names to check their
addresses, but the browser then resolves the name again on its own: a DNS server that
answers a public address to the check and 127.0.0.1 to the browser (DNS rebinding)
would get the browser onto this machine or a private network. WebSockets are not seen
by the guard at all.

So every worker runs this proxy on 127.0.0.1 and starts Chromium with it as its
SOCKS5 proxy, loopback included, and with its own resolver switched off
(`browser_args`). Chromium hands the proxy the host name (SOCKS5 resolves at the
proxy); the proxy asks the site which addresses that name may go to
(`SitePreset.connect_addresses`: on the allow-list, every address public unless the
site allows private targets) and connects to one of exactly those addresses. What was
checked is what is connected: a second DNS answer is never used. Everything the
browser opens goes this way (pages, downloads, redirect hops, WebSockets), so this is
also the layer that holds when the guard misses something.

The proxy listens on loopback without a password (Chromium offers none for SOCKS5);
another local process could use it, but only to reach what the site allows.
It runs on its own thread with its own event loop, beside the worker's synchronous
Playwright, and lives as long as the worker process (browser relaunches reuse it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pool_core.errors import UnsafeURLError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0  # a site that takes longer to accept fails like a network error
HANDSHAKE_TIMEOUT_S = 10.0
CHUNK = 64 * 1024
FAILURES_KEPT = 50

# SOCKS5 (RFC 1928) constants.
_VERSION = 5
_NO_AUTH = 0
_NO_ACCEPTABLE_METHOD = 0xFF
_CONNECT = 1
_IPV4, _DOMAIN, _IPV6 = 1, 3, 4
_SUCCEEDED = 0
_GENERAL_FAILURE = 1
_NOT_ALLOWED = 2
_HOST_UNREACHABLE = 4
_CONNECTION_REFUSED = 5
_COMMAND_NOT_SUPPORTED = 7
_ADDRESS_NOT_SUPPORTED = 8


@dataclass(frozen=True)
class EgressFailure:
    """A connection the proxy did not make: `refused` by the site's rules, or failed."""

    host: str
    port: int
    reason: str
    refused: bool


class EgressProxy:
    """A SOCKS5 proxy on 127.0.0.1 that connects only to addresses `allowed` returns.

    `allowed(host)` returns the addresses a connection to `host` may go to, or raises
    UnsafeURLError saying why none may; it is called on a worker thread (it may
    resolve names). Use start()/stop(), or as a context manager.
    """

    def __init__(self, allowed: Callable[[str], tuple[str, ...]]) -> None:
        self._allowed = allowed
        self.failures: list[EgressFailure] = []  # the latest, for the job's error message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> EgressProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="egress-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def browser_args(self) -> list[str]:
        """Chromium flags that send every connection through this proxy.

        `<-loopback>` takes away Chromium's implicit bypass of localhost and 127.0.0.1,
        and the resolver rule stops Chromium resolving names itself (SOCKS5 hands the
        name to the proxy; this also covers DNS prefetching).
        """
        return [f"--proxy-server=socks5://127.0.0.1:{self.port}",
                "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]

    def take_failures(self) -> list[EgressFailure]:
        """The failures since the last call (a job reads them to name its error)."""
        taken, self.failures = self.failures, []
        return taken

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            target = await asyncio.wait_for(self._handshake(reader, writer),
                                            HANDSHAKE_TIMEOUT_S)
            if target is None:
                return
            host, port = target
            opened = await self._open(host, port, writer)
            if opened is None:
                return
            up_reader, upstream = opened
            await _relay(reader, writer, up_reader, upstream)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        version, n_methods = await reader.readexactly(2)
        methods = await reader.readexactly(n_methods)
        if version != _VERSION or _NO_AUTH not in methods:
            writer.write(bytes((_VERSION, _NO_ACCEPTABLE_METHOD)))
            return None
        writer.write(bytes((_VERSION, _NO_AUTH)))
        version, command, _reserved, kind = await reader.readexactly(4)
        if kind == _IPV4:
            host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
        elif kind == _IPV6:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        elif kind == _DOMAIN:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("ascii", "replace")
        else:
            await _reply(writer, _ADDRESS_NOT_SUPPORTED)
            return None
        port = int.from_bytes(await reader.readexactly(2), "big")
        if version != _VERSION or command != _CONNECT:
            await _reply(writer, _COMMAND_NOT_SUPPORTED)
            return None
        return host, port

    async def _open(self, host: str, port: int, writer: asyncio.StreamWriter
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Check `host`, connect to one of its checked addresses, and answer the browser."""
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(None, self._allowed, host)
        except UnsafeURLError as exc:
            self._fail(EgressFailure(host, port, str(exc), refused=True))
            await _reply(writer, _NOT_ALLOWED)
            return None
        except Exception as exc:  # a broken check refuses; it never lets through
            self._fail(EgressFailure(host, port, f"could not check {host}: {exc}", True))
            await _reply(writer, _GENERAL_FAILURE)
            return None
        last: OSError | None = None
        for address in addresses:
            try:
                opened = await asyncio.wait_for(asyncio.open_connection(address, port),
                                                CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError) as exc:
                last = exc if isinstance(exc, OSError) else OSError(str(exc))
                continue
            await _reply(writer, _SUCCEEDED)
            return opened
        refused = isinstance(last, ConnectionRefusedError)
        reason = "connection refused" if refused else f"unreachable ({last})"
        self._fail(EgressFailure(host, port, f"{host}:{port}: {reason}", refused=False))
        await _reply(writer, _CONNECTION_REFUSED if refused else _HOST_UNREACHABLE)
        return None

    def _fail(self, failure: EgressFailure) -> None:
        if failure.refused:  # every Coupa page's third-party WebSocket: not news
            log.debug("egress proxy refused %s:%d: %s", failure.host, failure.port,
                      failure.reason)
        self.failures = [*self.failures[-(FAILURES_KEPT - 1):], failure]


async def _reply(writer: asyncio.StreamWriter, code: int) -> None:
    # The bound address is not used by Chromium; 0.0.0.0:0 is what most proxies send.
    writer.write(bytes((_VERSION, code, 0, _IPV4, 0, 0, 0, 0, 0, 0)))
    await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 up_reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
    """Copy both ways until both ends are done, or one direction fails."""
    pipes = [asyncio.ensure_future(_pipe(reader, upstream)),
             asyncio.ensure_future(_pipe(up_reader, writer))]
    done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
    for pipe in pending:
        pipe.cancel()
    for pipe in done:
        pipe.exception()  # retrieved: a reset connection is an ordinary end here


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends, then pass the end on (half-close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

