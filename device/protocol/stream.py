"""`StreamDecoder`: bytes in, messages out, bounded memory, resynchronising at each 0x00."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from device.protocol.codec import decode_payload
from device.protocol.errors import CrcError, FrameError, MessageError, ProtocolError
from device.protocol.framing import MAX_FRAME_BYTES, max_encoded_bytes, open_frame
from device.protocol.messages import Boot, Message

MAX_KEPT_ERRORS: int = 32
"""How many recent errors `StreamDecoder.errors` keeps (older ones are only counted)."""


@dataclass
class DecoderStats:
    """Counters of one `StreamDecoder` since it was made.

    ``frames`` good messages; ``crc_errors``, ``framing_errors`` (COBS, length, version),
    ``message_errors`` (good CRC, bad payload) and ``oversize`` (no 0x00 within the longest
    legal frame) count rejected frames; ``bytes_discarded`` is every byte not in a good frame;
    ``seq_gaps`` counts jumps in the sender's sequence numbers, ``seq_missing`` the numbers
    skipped (frames lost on the way, as far as sequence numbers tell).
    """

    frames: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    oversize: int = 0
    bytes_discarded: int = 0
    seq_gaps: int = 0
    message_errors: int = 0
    seq_missing: int = 0

    @property
    def bad_frames(self) -> int:
        """Every frame rejected for any reason."""
        return self.crc_errors + self.framing_errors + self.message_errors + self.oversize


class StreamDecoder:
    """Splits a byte stream at 0x00 delimiters and decodes each frame.

    Memory is bounded: at most ``max_encoded_bytes(max_frame_bytes)`` bytes of a partial frame
    are held; a longer run without a 0x00 is counted once as ``oversize`` and skipped up to the
    next 0x00. Empty frames (several 0x00 in a row; senders may send one to flush garbage) are
    ignored. `feed` never raises: every bad frame is counted in `stats` and the most recent
    `MAX_KEPT_ERRORS` are kept in `errors`.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 6:
            raise ValueError(f"max_frame_bytes must be >= 6, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self.max_buffer_bytes = max_encoded_bytes(max_frame_bytes)
        self.stats = DecoderStats()
        self.errors: deque[ProtocolError] = deque(maxlen=MAX_KEPT_ERRORS)
        self.last_seq: int | None = None
        self._buf = bytearray()
        self._skipping = False  # inside an oversize run: drop bytes until the next 0x00

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held right now (<= ``max_buffer_bytes``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[Message, int]]:
        """Decode every frame completed by ``data`` -> ``[(message, seq), ...]``."""
        out: list[tuple[Message, int]] = []
        if not isinstance(data, bytes):
            data = bytes(data)  # bytearray, memoryview: one copy, then the fast bytes path
        start = 0
        n = len(data)
        while start < n:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                break
            if self._skipping:
                self.stats.bytes_discarded += end - start + 1
                self._skipping = False
            else:
                if self._buf:
                    self._buf += data[start:end]
                    chunk = bytes(self._buf)
                    self._buf.clear()
                else:
                    chunk = data[start:end]
                if len(chunk) > self.max_buffer_bytes:
                    self._oversize(len(chunk) + 1)
                elif chunk:
                    self._frame(chunk, out)
            start = end + 1
        return out

    def reset(self) -> None:
        """Forget a partial frame and the last sequence number (e.g. after reconnecting)."""
        self.stats.bytes_discarded += len(self._buf)
        self._buf.clear()
        self._skipping = False
        self.last_seq = None

    def _append(self, data: bytes) -> None:
        if self._skipping:
            self.stats.bytes_discarded += len(data)
            return
        if len(self._buf) + len(data) > self.max_buffer_bytes:
            self._oversize(len(self._buf) + len(data))
            self._buf.clear()
            self._skipping = True
        else:
            self._buf += data

    def _oversize(self, n_bytes: int) -> None:
        self.stats.oversize += 1
        self.stats.bytes_discarded += n_bytes
        self.errors.append(
            FrameError(
                f"no 0x00 delimiter within {self.max_buffer_bytes} bytes "
                f"(frames are at most {self.max_frame_bytes} bytes decoded): skipped to the next"
            )
        )

    def _frame(self, chunk: bytes, out: list[tuple[Message, int]]) -> None:
        try:
            msg_type, seq, payload = open_frame(chunk, self.max_frame_bytes)
            message = decode_payload(msg_type, payload)
        except CrcError as exc:
            self.stats.crc_errors += 1
            self._reject(exc, len(chunk))
            return
        except MessageError as exc:
            self.stats.message_errors += 1
            self._reject(exc, len(chunk))
            return
        except FrameError as exc:
            self.stats.framing_errors += 1
            self._reject(exc, len(chunk))
            return
        except Exception as exc:  # a bug here must not kill a reader thread; count it
            self.stats.message_errors += 1
            self._reject(MessageError(f"unexpected {type(exc).__name__}: {exc}"), len(chunk))
            return
        self.stats.frames += 1
        last = self.last_seq
        if last is not None and not isinstance(message, Boot):
            missing = (seq - last - 1) & 0xFFFF
            if missing:
                self.stats.seq_gaps += 1
                if missing < 0x8000:  # a forward jump; a backward one is a restart or repeat
                    self.stats.seq_missing += missing
        self.last_seq = seq
        out.append((message, seq))

    def _reject(self, exc: ProtocolError, n_bytes: int) -> None:
        self.stats.bytes_discarded += n_bytes + 1
        self.errors.append(exc)
