"""The voice gateway interface and a simulator that records calls for tests and demos."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
import wave
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "CallResult",
    "CallStatus",
    "RecordedCall",
    "SimulatedVoiceGateway",
    "VoiceGateway",
    "wav_duration_ms",
]


class CallStatus(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallResult:
    call_id: str
    status: CallStatus
    duration_ms: int


@runtime_checkable
class VoiceGateway(Protocol):
    async def call(self, to: str, audio_path: Path, *, reference: str) -> CallResult:
        """Call ``to`` (E.164) and play ``audio_path`` once answered."""
        ...


@dataclass(frozen=True, slots=True)
class RecordedCall:
    call_id: str
    to: str
    audio_path: Path  # the copy kept by the simulator
    reference: str
    at: float
    result: CallResult


def wav_duration_ms(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return round(w.getnframes() * 1000 / w.getframerate())


class SimulatedVoiceGateway:
    """Records each call (number, copy of the audio, time, reference) and answers as configured.

    ``default`` is the answer for every number unless ``set_outcome(number, status)`` overrides
    it. An answered call lasts as long as the audio; the simulator does not sleep unless
    ``realtime`` is set.
    """

    def __init__(
        self, directory: Path | str, *, default: CallStatus = CallStatus.ANSWERED, realtime: bool = False
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.default = default
        self.realtime = realtime
        self.calls: list[RecordedCall] = []
        self._outcomes: dict[str, CallStatus] = {}
        self._ids = itertools.count(1)

    def set_outcome(self, to: str, status: CallStatus) -> None:
        self._outcomes[to] = status

    async def call(self, to: str, audio_path: Path, *, reference: str) -> CallResult:
        call_id = f"sim-{next(self._ids):06d}"
        source = Path(audio_path)
        copy = self.directory / f"{call_id}{source.suffix or '.wav'}"
        await asyncio.to_thread(shutil.copyfile, source, copy)
        status = self._outcomes.get(to, self.default)
        duration = 0
        if status is CallStatus.ANSWERED:
            duration = await asyncio.to_thread(wav_duration_ms, copy)
            if self.realtime:
                await asyncio.sleep(duration / 1000)
        result = CallResult(call_id, status, duration)
        self.calls.append(RecordedCall(call_id, to, copy, reference, time.time(), result))
        return result
