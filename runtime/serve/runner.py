"""Running `SpexServer` on a socket: as a context manager (tests, embedding) or until a signal."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from aiohttp import web

from runtime.engines.protocol import Engine
from runtime.serve.app import ServeConfig, SpexServer


@asynccontextmanager
async def serving(
    engine: Engine, config: ServeConfig, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[str, SpexServer]]:
    """Start `engine`, serve it on host:port (0 picks a free port); yield the base URL."""
    await engine.start()
    server = SpexServer(engine, config)
    # handler_cancellation: a client that hangs up cancels its handler, which aborts the request
    # in the engine, as SGLang aborts the requests of a disconnected client.
    runner = web.AppRunner(
        server.application(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield f"http://{host}:{bound[1]}", server
    finally:
        await runner.cleanup()
        await engine.close()


async def serve_until_stopped(engine: Engine, config: ServeConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; print the URL once listening (scripts wait for that line)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with serving(engine, config, host, port) as (url, _):
        print(f"spex serve: listening on {url} (engine {config.engine_label})", flush=True)
        await stop.wait()
    print("spex serve: stopped", file=sys.stderr, flush=True)
