"""Text to speech with the ``espeak-ng`` command (Debian package ``espeak-ng``) into WAV files.

English (``en``) and Mandarin (``cmn``). Verification codes are read digit by digit with pauses
and the sentence is repeated, as carriers' voice-OTP calls do.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "ESPEAK",
    "EspeakNotInstalled",
    "Language",
    "TtsOptions",
    "code_sentence",
    "espeak_available",
    "synthesize",
    "synthesize_async",
    "synthesize_code",
]

ESPEAK = "espeak-ng"


class EspeakNotInstalled(RuntimeError):
    pass


class Language(StrEnum):
    EN = "en"
    CMN = "cmn"


@dataclass(frozen=True, slots=True)
class TtsOptions:
    speed_wpm: int = 140  # espeak default is 175; slower is clearer on a phone line
    pitch: int = 50
    amplitude: int = 120
    word_gap_10ms: int = 0  # extra gap between words, in units of 10 ms


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def code_sentence(code: str, language: Language, *, repeat: int = 2) -> str:
    """The sentence read for ``code``: digits separated by pauses, repeated ``repeat`` times."""
    digits = [c for c in code if c.isdigit()]
    if not digits:
        raise ValueError("code must contain digits")
    if language is Language.EN:
        sentence = "Your code is " + ", ".join(digits) + "."
        joiner = " I repeat. "
    else:
        sentence = "您的验证码是 " + " ".join(digits) + "。"
        joiner = " 再说一遍。 "
    return joiner.join([sentence] * repeat)


def _command(text: str, out: Path, language: Language, options: TtsOptions) -> list[str]:
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise EspeakNotInstalled("espeak-ng is not installed (Debian package espeak-ng)")
    return [
        exe,
        "-v",
        language.value,
        "-s",
        str(options.speed_wpm),
        "-p",
        str(options.pitch),
        "-a",
        str(options.amplitude),
        "-g",
        str(options.word_gap_10ms),
        "-w",
        str(out),
        "--",
        text,
    ]


def synthesize(
    text: str, out: Path | str, *, language: Language = Language.EN, options: TtsOptions | None = None
) -> Path:
    """Render ``text`` to the WAV file ``out`` (mono 16-bit PCM, 22050 Hz) and return its path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = _command(text, path, language, options or TtsOptions())
    proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    if proc.returncode != 0 or not path.exists():
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return path


async def synthesize_async(
    text: str, out: Path | str, *, language: Language = Language.EN, options: TtsOptions | None = None
) -> Path:
    """``synthesize`` without blocking the event loop."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = _command(text, path, language, options or TtsOptions())
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    if proc.returncode != 0 or not path.exists():
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')}")
    return path


def synthesize_code(
    code: str,
    out: Path | str,
    *,
    language: Language = Language.EN,
    repeat: int = 2,
    options: TtsOptions | None = None,
) -> Path:
    """Render a verification code read digit by digit, repeated ``repeat`` times."""
    return synthesize(code_sentence(code, language, repeat=repeat), out, language=language, options=options)
