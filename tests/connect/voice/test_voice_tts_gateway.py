from __future__ import annotations

import wave
from pathlib import Path

import pytest

from tessera.connect.voice.gateway import CallStatus, SimulatedVoiceGateway, VoiceGateway, wav_duration_ms
from tessera.connect.voice.tts import (
    Language,
    code_sentence,
    espeak_available,
    synthesize_async,
    synthesize_code,
)

needs_espeak = pytest.mark.skipif(
    not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


def test_code_sentence() -> None:
    assert code_sentence("4815", Language.EN, repeat=1) == "Your code is 4, 8, 1, 5."
    assert code_sentence("48-15", Language.CMN, repeat=1) == "您的验证码是 4 8 1 5。"  # noqa: RUF001
    assert code_sentence("4815", Language.EN).count("Your code is") == 2
    with pytest.raises(ValueError):
        code_sentence("abc", Language.EN)


def _check_wav(path: Path) -> tuple[int, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        assert w.getframerate() == 22050
        frames = w.getnframes()
        assert frames > 0
        return frames, w.getframerate()


@needs_espeak
@pytest.mark.parametrize("language", [Language.EN, Language.CMN])
def test_synthesize_code_wav(tmp_path: Path, language: Language) -> None:
    once = synthesize_code("4815", tmp_path / f"{language}-1.wav", language=language, repeat=1)
    twice = synthesize_code("4815", tmp_path / f"{language}-2.wav", language=language)
    frames_once, rate = _check_wav(once)
    frames_twice, _ = _check_wav(twice)
    assert frames_once / rate > 1.5  # four digits with pauses take a while
    assert frames_twice > 1.7 * frames_once  # repeated


@needs_espeak
async def test_synthesize_async(tmp_path: Path) -> None:
    path = await synthesize_async("Hello from Tessera", tmp_path / "a.wav")
    _check_wav(path)


def _silence(path: Path, ms: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * (8 * ms))
    return path


async def test_simulated_gateway_records_calls(tmp_path: Path) -> None:
    gateway = SimulatedVoiceGateway(tmp_path / "calls")
    assert isinstance(gateway, VoiceGateway)
    audio = _silence(tmp_path / "a.wav", 1500)
    gateway.set_outcome("+8613800000002", CallStatus.BUSY)
    gateway.set_outcome("+8613800000003", CallStatus.NO_ANSWER)
    answered = await gateway.call("+8613800000001", audio, reference="otp-1")
    busy = await gateway.call("+8613800000002", audio, reference="otp-2")
    missed = await gateway.call("+8613800000003", audio, reference="otp-3")
    assert (answered.status, answered.duration_ms) == (CallStatus.ANSWERED, 1500)
    assert (busy.status, busy.duration_ms) == (CallStatus.BUSY, 0)
    assert missed.status is CallStatus.NO_ANSWER
    assert [c.reference for c in gateway.calls] == ["otp-1", "otp-2", "otp-3"]
    first = gateway.calls[0]
    assert first.to == "+8613800000001" and first.audio_path.parent == tmp_path / "calls"
    assert first.audio_path.read_bytes() == audio.read_bytes()
    assert len({c.call_id for c in gateway.calls}) == 3


@needs_espeak
async def test_gateway_plays_synthesised_code(tmp_path: Path) -> None:
    gateway = SimulatedVoiceGateway(tmp_path / "calls", default=CallStatus.ANSWERED)
    audio = synthesize_code("2468", tmp_path / "code.wav", language=Language.CMN)
    result = await gateway.call("+8613800000009", audio, reference="otp-9")
    assert result.duration_ms == wav_duration_ms(audio) > 2000
    _check_wav(gateway.calls[0].audio_path)
