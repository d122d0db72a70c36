"""A minimal SMTP server for the end-to-end benchmark: it accepts every message and notes,
per Message-ID, the moment it accepted it (the end of DATA).

The benchmark points the notifications service at this sink rather than at the shared
MailDev: acceptance times are then exact and queryable without listing a mailbox, and a
national replay does not leave tens of thousands of messages in MailDev for someone else's
`homeward-stack reset` to clear.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

_MESSAGE_ID = re.compile(rb"^message-id:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class SmtpSink:
    """Start with :meth:`start` (a thread with its own event loop), read :attr:`accepted`
    (Message-ID -> epoch seconds) and :attr:`count`, then :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.accepted: dict[str, float] = {}
        self.count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say("220 homeward-bench ESMTP")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    say("250-homeward-bench")
                    say("250-8BITMIME")
                    say("250-SMTPUTF8")
                    say("250 SIZE 52428800")
                elif verb == b"HELO":
                    say("250 homeward-bench")
                elif verb == b"DATA":
                    say("354 end with <CRLF>.<CRLF>")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    at = time.time()
                    head = data.split(b"\r\n\r\n", 1)[0]
                    match = _MESSAGE_ID.search(head)
                    if match:
                        self.accepted.setdefault(match.group(1).decode(errors="replace"), at)
                    self.count += 1
                    say("250 OK accepted")
                elif verb == b"QUIT":
                    say("221 bye")
                    await writer.drain()
                    return
                else:  # MAIL, RCPT, RSET, NOOP
                    say("250 OK")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()

    def start(self) -> SmtpSink:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve() -> None:
                self._server = await asyncio.start_server(self._session, self.host, 0, limit=2**24)
                self.port = int(self._server.sockets[0].getsockname()[1])
                ready.set()
                await self._server.serve_forever()

            try:
                loop.run_until_complete(serve())
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the SMTP sink did not start")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:

            def close() -> None:
                server.close()
                for task in asyncio.all_tasks(loop):
                    task.cancel()

            loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
