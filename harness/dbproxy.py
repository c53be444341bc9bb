"""A tiny TCP proxy between a stack's web and PostgreSQL, which the chaos suite can cut (harness/stack.py).

The shared PostgreSQL server must keep running for everyone else, so "PostgreSQL unreachable"
is made true for the chaos web only: gunicorn connects through this proxy, and `cut()` resets
every proxied connection and answers new ones by closing them at once (what a database behind
a failed network or a restarting server looks like to a client). `restore()` lets traffic
through again. Runs its own asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

# Bytes read per chunk when copying one direction of a connection.
CHUNK_BYTES = 65536


class PostgresProxy:
    def __init__(self, *, target_host: str, target_port: int, listen_port: int) -> None:
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.connected = True
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)

    def start(self) -> PostgresProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", self.listen_port))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def cut(self) -> None:
        """Make PostgreSQL unreachable: reset open connections, close new ones at once."""
        self.connected = False
        self._call(self._reset_all())

    def restore(self) -> None:
        self.connected = True

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _close(self) -> None:
        self._server.close()
        await self._reset_all()

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self.connected:
            self.refused += 1
            _abort(client_writer)
            return
        try:
            server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), timeout=5)
        except (OSError, TimeoutError):
            _abort(client_writer)
            return
        self._writers.update((client_writer, server_writer))
        try:
            await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
        finally:
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                _abort(writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):  # already closed
        writer.transport.abort()
