"""The response formats, as the samples come: each encoder turns float32 chunks into bytes to send.

Runs in the `mcp-tts http` process. pcm, wav and opus stream as they are made; mp3 and flac are sent
whole at the end, as libsndfile writes their headers (lengths, the Xing frame) only once the audio is
complete, and a stream sent before that decodes short.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg"}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates Opus encodes


def int16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Encoder:
    """pcm: 16-bit little-endian mono at the backend's rate (stated in the X-Sample-Rate header)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.out_rate = sample_rate  # the rate of what is sent (X-Sample-Rate)

    def begin(self) -> bytes:
        return b""

    def encode(self, samples: np.ndarray) -> bytes:
        return int16(samples)

    def finish(self) -> bytes:
        return b""


class WavEncoder(Encoder):
    """A WAV whose length is not known when it starts: RIFF and data sizes 0xFFFFFFFF, the convention of
    streaming speech servers, which decoders read to the end of the stream."""

    def begin(self) -> bytes:
        rate = self.sample_rate
        return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate,
                rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF))


class _Appended:
    """A file object for libsndfile that keeps what is appended, to be sent; it never seeks back in what
    was sent (Ogg writes none)."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.size = 0
        self.pos = 0

    def write(self, data) -> int:
        data = bytes(data)
        if self.pos == self.size:
            self.pending += data
            self.size += len(data)
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        out, self.pending = bytes(self.pending), bytearray()
        return out


class OpusEncoder(Encoder):
    """Ogg Opus through libsndfile, page by page; a backend rate Opus lacks (espeak's 22,050 Hz) is resampled
    to the next one up (linear interpolation, carried across chunks)."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.out_rate = next((r for r in OPUS_RATES if r >= sample_rate), 48000)
        self.sink = _Appended()
        self.file = sf.SoundFile(self.sink, "w", self.out_rate, 1, format="OGG", subtype="OPUS")
        self._pos = 0.0  # next output sample's position in input samples, from the last kept input sample
        self._last = np.zeros(1, dtype=np.float32)

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        if self.out_rate == self.sample_rate or not len(samples):
            return samples
        joined = np.concatenate([self._last, samples])  # index 0: the last sample of the previous chunk
        step = self.sample_rate / self.out_rate
        positions = np.arange(self._pos, len(joined) - 1, step)
        out = np.interp(positions, np.arange(len(joined)), joined).astype(np.float32)
        self._pos = (positions[-1] + step - (len(joined) - 1)) if len(positions) else self._pos - len(samples)
        self._last = joined[-1:]
        return out

    def encode(self, samples: np.ndarray) -> bytes:
        self.file.write(self._resample(samples))
        return self.sink.take()

    def finish(self) -> bytes:
        self.file.close()
        return self.sink.take()


class WholeEncoder(Encoder):
    """mp3 or flac: the samples kept, encoded at the end."""

    FORMATS = {"mp3": ("MP3", "MPEG_LAYER_III"), "flac": ("FLAC", "PCM_16")}

    def __init__(self, sample_rate: int, name: str) -> None:
        super().__init__(sample_rate)
        self.format, self.subtype = self.FORMATS[name]
        self.chunks: list[np.ndarray] = []

    def encode(self, samples: np.ndarray) -> bytes:
        self.chunks.append(samples)
        return b""

    def finish(self) -> bytes:
        buffer = io.BytesIO()
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)
        sf.write(buffer, samples, self.sample_rate, format=self.format, subtype=self.subtype)
        return buffer.getvalue()


def encoder(name: str, sample_rate: int) -> Encoder:
    if name == "wav":
        return WavEncoder(sample_rate)
    if name == "opus":
        return OpusEncoder(sample_rate)
    if name in WholeEncoder.FORMATS:
        return WholeEncoder(sample_rate, name)
    return Encoder(sample_rate)
