"""A cap on request bodies, enforced before anything reads or stores the body.

Two layers, one rule (`body_limit`):

* `BodyLimitMiddleware` wraps the ASGI application, so the cap holds under any server:
  a declared Content-Length over the limit gets 413 at once; a body without one
  (chunked) is counted as its `http.request` messages arrive and stops with 413 past
  the limit, before Django's request parsing (CSRF, forms) ever sees it.
* `CappedServer` is daphne as `runpool` serves it. Daphne (Twisted) receives the
  whole body before it calls the application, then queues all of it in memory at once:
  a 100 MB POST to the login page cost over a gigabyte before any application code
  ran. Its requests are checked while the body arrives (the declared length as soon
  as the headers are in, then every chunk), answered with 413 and never queued.

Every URL gets POOL_MAX_REQUEST_BYTES; the two upload forms (batch files, site
sessions) and the API's batch upload get POOL_MAX_UPLOAD_BYTES plus room for the
form's other fields.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

# The upload forms' other fields and multipart boundaries, beside the file itself.
FORM_OVERHEAD = 64 * 1024
# URL names of the forms (and the API endpoint) that take a file.
UPLOAD_URL_NAMES = ("batch_upload", "site_session_upload", "api:batch_upload")
# How long a refused request may keep sending (discarded) before it is cut off: long
# enough for an ordinary client to finish sending and read the 413, short enough that
# a slow sender cannot hold the connection.
DRAIN_SECONDS = 10.0


@functools.cache
def _upload_paths() -> frozenset[str]:
    from django.urls import reverse

    return frozenset(reverse(name) for name in UPLOAD_URL_NAMES)


def body_limit(path: str) -> int:
    """The most request-body bytes accepted for `path`."""
    if path in _upload_paths():
        return int(settings.POOL_MAX_UPLOAD_BYTES) + FORM_OVERHEAD
    return int(settings.POOL_MAX_REQUEST_BYTES)


def too_large_message(limit: int, size: int | None = None) -> bytes:
    said = f" ({size:,} bytes)" if size is not None else ""
    return (f"413 Request Entity Too Large: the request body{said} is over the limit of "
            f"{limit:,} bytes for this address. Nothing was stored.\n").encode()


# -- ASGI --------------------------------------------------------------------------------

class BodyLimitMiddleware:
    """Refuse HTTP request bodies over `body_limit` with 413, whatever the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = [value for name, value in scope.get("headers", [])
                    if name.lower() == b"content-length"]
        if any(not value.strip().isdigit() for value in declared):
            await _respond(send, 400, b"400 Bad Request: malformed Content-Length.\n")
            return
        too_long = [int(value) for value in declared if int(value) > limit]
        if too_long:
            log.warning("refused a %s-byte body for %s (limit %s)", too_long[0],
                        scope["path"][:200], limit)
            await _respond(send, 413, too_large_message(limit, too_long[0]))
            return

        received = 0
        exceeded = False
        started = False

        async def capped_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # What the application sees is a client gone away: Django then stops
                    # reading and sends nothing, and the 413 below is the answer.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, capped_receive, tracking_send)
        if exceeded and not started:
            log.warning("refused a body of over %s bytes for %s", limit, scope["path"][:200])
            await _respond(send, 413, too_large_message(limit))


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# -- daphne ------------------------------------------------------------------------------

def _capped_request_class() -> type:
    """daphne's WebRequest, refusing a body over the limit while it arrives."""
    from daphne.http_protocol import WebRequest
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor  # its zope interfaces confuse mypy

    class CappedWebRequest(WebRequest):
        refused = False
        received = 0
        limit = 0

        def gotLength(self, length: int | None) -> None:
            # The request line is parsed by now; its target is on the channel.
            target = getattr(self.channel, "_path", b"/")
            path = unquote(urlsplit(target.decode("latin-1")).path)
            self.limit = body_limit(path)
            if length is not None and length > self.limit:
                super().gotLength(0)  # an empty buffer: nothing of the body is kept
                # Twisted would send "100 Continue" after this: the answer is final.
                self.requestHeaders.removeHeader(b"Expect")
                self._refuse(path, length)
                return
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            if self.refused:
                return  # drained and dropped
            self.received += len(data)
            if self.received > self.limit:
                target = getattr(self.channel, "_path", b"/").decode("latin-1")
                self._refuse(unquote(urlsplit(target).path), None)
                return
            super().handleContentChunk(data)

        def requestReceived(self, command: bytes, path: bytes,
                            version: bytes) -> None:
            if self.refused:
                # The refused body has been drained: close (the 413 said so).
                if self.channel is not None:
                    self.channel.loseConnection()
                return
            super().requestReceived(command, path, version)

        def _refuse(self, path: str, size: int | None) -> None:
            self.refused = True
            log.warning("refused a request body %s for %s (limit %s bytes)",
                        f"of {size:,} bytes" if size is not None else "past the limit",
                        path[:200], f"{self.limit:,}")
            body = too_large_message(self.limit, size)
            self.channel.transport.write(
                b"HTTP/1.1 413 Request Entity Too Large\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\n".encode()
                + b"Connection: close\r\n\r\n" + body)
            # Keep reading (and dropping) what the client still sends, so that it
            # finishes sending and reads the answer instead of a reset; cut it off if
            # it takes too long.
            reactor.callLater(DRAIN_SECONDS, _cut_off, self.channel)

    return CappedWebRequest


def _cut_off(channel: Any) -> None:
    if channel.transport is not None:
        channel.transport.abortConnection()


@functools.cache
def capped_http_factory_class() -> type:
    from daphne.http_protocol import HTTPFactory

    request_class = _capped_request_class()

    class CappedHTTPFactory(HTTPFactory):
        def buildProtocol(self, addr: Any) -> Any:
            protocol = super().buildProtocol(addr)
            protocol.requestFactory = request_class
            return protocol

    return CappedHTTPFactory


def capped_server(**kwargs: Any) -> Any:
    """A daphne Server whose HTTP requests are capped by `body_limit` as they arrive."""
    from daphne.server import Server

    factory_class = capped_http_factory_class()

    class CappedServer(Server):
        # Server.run builds its HTTP factory itself (`self.http_factory =
        # HTTPFactory(self)`) and listens with it at once: this is the one place to
        # put the capped one in.
        @property
        def http_factory(self) -> Any:
            return self._capped_factory

        @http_factory.setter
        def http_factory(self, built: Any) -> None:
            self._capped_factory = factory_class(self)

    return CappedServer(**kwargs)

