"""Measure how many messages/second a running sandbox instance accepts under injected latency.

    python manage.py sandbox_vendors &                       # the server, in its own process
    python -m sandbox.loadtest --instance sms-primary --count 5000 --concurrency 100 --latency-ms 50
    python -m sandbox.loadtest --instance smtp-primary --count 3000 --concurrency 50 --latency-ms 50

It resets the sandbox first, so do not point it at a sandbox other tests are using.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import aiohttp

from sandbox.client import SandboxControl

ACCOUNT_SID = "AC" + "0" * 32
AUTH_HEADER = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:sandbox-token".encode()).decode()}


async def run_workers(count: int, concurrency: int, send_all: Callable[[list[int]], Awaitable[None]]) -> float:
    """Split `count` sends over `concurrency` workers; return elapsed seconds."""
    shares = [list(range(i, count, concurrency)) for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(send_all(share) for share in shares))
    return time.perf_counter() - started


async def load_twilio(url: str, count: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH_HEADER) as session:
        endpoint = f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

        async def send_all(numbers: list[int]) -> None:
            for n in numbers:
                form = {"To": f"+1415{n:07d}", "From": "+15005550006", "Body": f"load test {n}"}
                async with session.post(endpoint, data=form) as response:
                    if response.status != 201:
                        raise RuntimeError(f"unexpected {response.status}: {await response.text()}")

        return await run_workers(count, concurrency, send_all)


async def smtp_command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    """Send one command and return the final line of its (possibly multi-line) reply."""
    if line:
        writer.write(line + b"\r\n")
    while True:
        reply = await reader.readline()
        if reply[3:4] != b"-":
            if not reply.startswith((b"2", b"3")):
                raise RuntimeError(f"SMTP answered {reply!r} to {line!r}")
            return reply


async def load_smtp(host: str, port: int, count: int, concurrency: int) -> float:
    async def send_all(numbers: list[int]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        await smtp_command(reader, writer, b"")
        await smtp_command(reader, writer, b"EHLO loadtest")
        for n in numbers:
            await smtp_command(reader, writer, b"MAIL FROM:<noreply@beacon.example>")
            await smtp_command(reader, writer, f"RCPT TO:<user{n}@example.com>".encode())
            await smtp_command(reader, writer, b"DATA")
            body = f"Message-ID: <load-{n}@beacon.example>\r\nSubject: load {n}\r\n\r\nhello {n}\r\n."
            await smtp_command(reader, writer, body.encode())
        await smtp_command(reader, writer, b"QUIT")
        writer.close()

    return await run_workers(count, concurrency, send_all)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-url", default="http://127.0.0.1:8100")
    parser.add_argument("--instance", default="sms-primary")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50)
    args = parser.parse_args()

    control = SandboxControl(args.control_url)
    control.reset()
    control.set_faults(args.instance, latency_ms=args.latency_ms)
    instance = control.instance(args.instance)
    if instance["kind"] == "twilio":
        elapsed = asyncio.run(load_twilio(instance["url"], args.count, args.concurrency))
    else:
        elapsed = asyncio.run(load_smtp(instance["host"], instance["port"], args.count, args.concurrency))
    stored = control.instance(args.instance)["message_count"]
    control.reset()
    print(
        f"{args.instance}: {args.count} messages in {elapsed:.2f}s = {args.count / elapsed:.0f} msg/s "
        f"(latency {args.latency_ms:g} ms, concurrency {args.concurrency}, stored {stored})"
    )
    if stored != args.count:
        raise SystemExit(f"expected {args.count} stored messages, found {stored}")


if __name__ == "__main__":
    main()
