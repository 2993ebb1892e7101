"""Jobs of verification codes: the SMS → voice fallback decision and direct voice calls."""

from __future__ import annotations

import uuid
from typing import Any

from tessera.connect.verify import service
from tessera.core.jobs.registry import JobContext, handler


@handler("verify.fallback", queue=service.QUEUE, max_attempts=3)
async def fallback(payload: dict[str, Any], job: JobContext) -> None:
    await service.run_fallback(job.session, uuid.UUID(payload["verification_id"]), int(payload["send"]))


@handler("verify.voice_call", queue=service.QUEUE, max_attempts=3)
async def voice_call(payload: dict[str, Any], job: JobContext) -> None:
    await service.run_voice(job.session, uuid.UUID(payload["verification_id"]), int(payload["send"]))
