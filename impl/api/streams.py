"""asyncio streams over `MptcpSocket`s: `open_connection(stack, host, port)` and
`start_server(stack, callback, host, port)`, shaped like `asyncio.open_connection` and
`asyncio.start_server`.

The reader is a real `asyncio.StreamReader`, fed from the stack's driver thread through
`loop.call_soon_threadsafe` (so it runs in the event loop, in order). The writer
(`MptcpStreamWriter`) queues bytes on the socket at once; `drain()` waits in an executor
thread for room in the socket's send buffer. Blocking socket calls that take a round
trip (connect, listen) run in the loop's default executor so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from impl.api.socket import SHUT_WR, MptcpSocket
from impl.api.stack import MptcpStack

__all__ = ["MptcpServer", "MptcpStreamWriter", "open_connection", "start_server"]

STREAM_LIMIT = 1 << 16  # asyncio's default StreamReader limit (for readline and friends)


def _feed_from(sock: MptcpSocket, loop: asyncio.AbstractEventLoop,
               reader: asyncio.StreamReader) -> None:
    def later(function: Callable[..., Any], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(function, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody reads any more

    def on_eof(error: OSError | None) -> None:
        later(reader.feed_eof) if error is None else later(reader.set_exception, error)

    sock.take_stream(lambda data: later(reader.feed_data, data), on_eof)


class MptcpStreamWriter:
    """The writing half, with `asyncio.StreamWriter`'s methods."""

    def __init__(self, sock: MptcpSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.socket = sock
        self._loop = loop
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.socket.send_nowait(data)

    def writelines(self, data: list[bytes]) -> None:
        for piece in data:
            self.write(piece)

    async def drain(self) -> None:
        if not self.socket.has_room():  # the common case needs no executor thread
            await self._loop.run_in_executor(None, self.socket.wait_for_room)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.socket.shutdown(SHUT_WR)

    def close(self) -> None:
        self._closing = True
        self.socket.close()

    def is_closing(self) -> bool:
        return self._closing

    async def wait_closed(self) -> None:
        await self._loop.run_in_executor(None, self.socket.wait_closed)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sock = self.socket
        getters = {"peername": sock.getpeername, "sockname": sock.getsockname,
                   "socket": lambda: sock, "subflows": sock.subflows,
                   "mptcp_info": sock.mptcp_info}
        getter = getters.get(name)
        return default if getter is None else getter()


def _streams(sock: MptcpSocket, loop: asyncio.AbstractEventLoop,
             limit: int) -> tuple[asyncio.StreamReader, MptcpStreamWriter]:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    _feed_from(sock, loop, reader)
    return reader, MptcpStreamWriter(sock, loop)


async def open_connection(stack: MptcpStack, host: str, port: int, *,
                          limit: int = STREAM_LIMIT,
                          timeout: float | None = None,
                          ) -> tuple[asyncio.StreamReader, MptcpStreamWriter]:
    """Connect (MP_CAPABLE, then joins in a full mesh) and return (reader, writer)."""
    loop = asyncio.get_running_loop()
    sock = stack.socket()
    sock.settimeout(timeout)
    try:
        await loop.run_in_executor(None, sock.connect, (host, port))
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return _streams(sock, loop, limit)


ClientCallback = Callable[[asyncio.StreamReader, MptcpStreamWriter], Awaitable[None] | None]


class MptcpServer:
    """What `start_server` returns: `close`, `wait_closed`, `serve_forever`, `sockets`,
    and `async with`, like `asyncio.Server`."""

    def __init__(self, listener: MptcpSocket, loop: asyncio.AbstractEventLoop,
                 callback: ClientCallback, limit: int) -> None:
        self.listener = listener
        self._loop = loop
        self._callback = callback
        self._limit = limit
        self._closed = loop.create_future()
        self._tasks: set[asyncio.Task] = set()

    @property
    def sockets(self) -> list[MptcpSocket]:
        return [] if self._closed.done() else [self.listener]

    def _accepted(self, sock: MptcpSocket) -> None:
        # Driver thread, lock held: only hand over to the loop.
        try:
            self._loop.call_soon_threadsafe(self._connected, sock)
        except RuntimeError:
            sock._abort_connection()

    def _connected(self, sock: MptcpSocket) -> None:
        if self._closed.done():
            sock.abort()
            return
        reader, writer = _streams(sock, self._loop, self._limit)
        result = self._callback(reader, writer)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def is_serving(self) -> bool:
        return not self._closed.done()

    def close(self) -> None:
        if not self._closed.done():
            self.listener.close()
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def serve_forever(self) -> None:
        await asyncio.shield(self._closed)

    async def __aenter__(self) -> MptcpServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(stack: MptcpStack, client_connected_cb: ClientCallback,
                       host: str | None = None, port: int = 0, *, backlog: int = 100,
                       limit: int = STREAM_LIMIT) -> MptcpServer:
    """Listen on `port` (0: any free port, see `server.sockets[0].getsockname()`) and
    call `client_connected_cb(reader, writer)` for every connection (a coroutine
    function becomes a task)."""
    loop = asyncio.get_running_loop()
    listener = stack.socket()
    listener.bind((host or "", port))
    server = MptcpServer(listener, loop, client_connected_cb, limit)
    listener.on_accept = server._accepted
    await loop.run_in_executor(None, listener.listen, backlog)
    return server
