"""An aiosmtpd server that misbehaves on purpose, for the at-least-once tests.

- ``drop_at_quit``: answer 250 to DATA (the message is accepted and kept),
  then drop the connection when the client says QUIT.
- ``drop_after_data``: keep the message but drop the connection instead of
  answering DATA, so the client never learns it was accepted (it must retry;
  the receiver sees the same Message-ID twice).
- ``stall_data``: hold the DATA reply until the flag is cleared (or the
  client goes away); the content received is kept in ``stalled``, not in
  ``messages``, since it was never accepted.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message

from tests.support.servers import SmtpServer


@dataclass
class FaultySmtpServer(SmtpServer):
    drop_at_quit: bool = False
    drop_after_data: bool = False
    stall_data: bool = False
    stalled: list[Message] = field(default_factory=list)
    stalled_event: threading.Event = field(default_factory=threading.Event)
    quits_dropped: int = 0

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content or envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        if self.stall_data:
            with self._lock:
                self.stalled.append(message)
            self.stalled_event.set()
            while self.stall_data and not server.transport.is_closing():
                await asyncio.sleep(0.05)
            server.transport.abort()
            return "451 4.3.0 Stalled, try again later"
        with self._lock:
            self.messages.append(message)
        if self.drop_after_data:
            server.transport.abort()
            return "250 Message accepted for delivery (nobody hears this)"
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server, session, envelope):
        if self.drop_at_quit:
            self.quits_dropped += 1
            server.transport.abort()
        return "221 Bye"

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.stalled.clear()
        self.stalled_event.clear()
        self.drop_at_quit = self.drop_after_data = self.stall_data = False
        self.quits_dropped = 0
