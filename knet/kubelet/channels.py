"""The Kubernetes channel protocols over WebSocket (`*.channel.k8s.io`), as frames <-> (channel,
bytes) pairs: pure functions, no sockets.

- `v5.channel.k8s.io` / `v4.channel.k8s.io` (and the unversioned `channel.k8s.io`): the first
  byte of a frame is the channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize; v5 adds 255
  "close channel N"). kubectl sends binary frames; the official Python client's
  `write_stdin("text")` sends a TEXT frame whose first character is chr(channel), so a text
  frame is read as its UTF-8 bytes.
- `base64.channel.k8s.io` (and `v4.base64.channel.k8s.io`): text frames whose first character
  is the channel as an ASCII digit and whose rest is base64; answers go out the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io",
                  "base64.channel.k8s.io", "channel.k8s.io")


class FrameError(ValueError):
    """A frame that no channel protocol can read."""


@dataclass(frozen=True)
class Codec:
    protocol: str

    @property
    def base64(self) -> bool:
        return "base64" in self.protocol

    @property
    def can_close(self) -> bool:
        """Only v5 has the close-channel signal (255)."""
        return self.protocol.startswith("v5.")

    def decode(self, data: bytes | str) -> tuple[int, bytes]:
        """One incoming frame (bytes for binary, str for text) -> (channel, payload)."""
        if isinstance(data, str):
            if self.base64:
                if not data or not data[0].isdigit():
                    raise FrameError(f"base64 channel frame {data[:8]!r} does not start with "
                                     "a channel digit")
                try:
                    return int(data[0]), base64.b64decode(data[1:], validate=True)
                except binascii.Error as exc:
                    raise FrameError(f"channel {data[0]}: payload is not base64: {exc}") from None
            data = data.encode("utf-8")
        if not data:
            raise FrameError("empty frame: no channel byte")
        return data[0], bytes(data[1:])

    def encode(self, channel: int, payload: bytes) -> bytes | str:
        """(channel, payload) -> the frame to send (str means a text frame)."""
        if self.base64:
            return str(channel) + base64.b64encode(payload).decode("ascii")
        return bytes([channel]) + payload


def terminal_size(data: bytes) -> tuple[int, int] | None:
    """(cols, rows) from a resize frame's JSON {"Width": .., "Height": ..}; None if bad."""
    try:
        size = json.loads(data or b"{}")
        return int(size.get("Width", 80)), int(size.get("Height", 24))
    except (ValueError, TypeError, AttributeError):
        return None
