"""Verification codes: create and send, check, resend, voice fallback, statistics.

Codes are stored as ``HMAC-SHA256(tenant index key, salt | code)`` with a random per-row salt:
a leaked table alone does not let anyone test the (small) code space. One deviation, stated:
while an SMS waits for its voice fallback decision the code is also kept sealed
(``EncryptedString``, AES-GCM with the tenant key) in ``code_sealed``, because the voice call
must read it out; it is wiped as soon as the fallback job decides, the code is approved or the
verification is closed.

Limits (429, ``details.rule``): per number ``PER_NUMBER``, per end-user IP ``PER_IP`` (``client_ip``, passed by the tenant's backend), per tenant
``PER_TENANT``; a resend waits ``RESEND_COOLDOWN`` seconds; a verification accepts at most
``MAX_CHECKS`` checks and is then refused.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
import secrets
import statistics
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance import service as compliance
from tessera.connect.models import Message
from tessera.connect.schemas import MessageIn
from tessera.connect.verify.errors import (
    VerificationClosed,
    VerificationNotFound,
    VerifyInvalid,
    VerifyLimited,
)
from tessera.connect.verify.models import Verification
from tessera.connect.verify.schemas import TemplateStats, VerifyIn
from tessera.connect.voice.gateway import SimulatedVoiceGateway, VoiceGateway
from tessera.connect.voice.tts import Language, code_sentence, synthesize_async
from tessera.core import context
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import table_of, utcnow, uuid7
from tessera.core.jobs import service as jobs

MAX_CHECKS = 5
RESEND_COOLDOWN = 30
MAX_SENDS = 5
PER_NUMBER = (5, 600)  # verifications per number per seconds
PER_IP = (20, 600)
PER_TENANT = (6000, 60)
QUEUE = "verify"

BODIES = {
    "en": "Your verification code is {code}. It expires in {minutes} minutes.",
    "zh": "您的验证码是{code}，{minutes}分钟内有效，请勿泄露。",
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    id: uuid.UUID
    approved: bool
    checks_left: int


# --- voice gateway -----------------------------------------------------------------------------

_gateway: list[VoiceGateway] = []


def voice_dir() -> Path:
    from tessera.settings import get_settings

    return Path(get_settings().files_dir) / "voice"


def get_voice_gateway() -> VoiceGateway:
    """The configured voice gateway; the simulator (recordings in data_dir/files/voice) by default."""
    if not _gateway:
        _gateway.append(SimulatedVoiceGateway(voice_dir()))
    return _gateway[0]


def set_voice_gateway(gateway: VoiceGateway | None) -> None:
    _gateway.clear()
    if gateway is not None:
        _gateway.append(gateway)


def language_of(locale: str) -> Language:
    return Language.CMN if locale.lower().startswith("zh") else Language.EN


# --- codes -------------------------------------------------------------------------------------


def _digest(salt: str, code: str) -> str:
    return blind_index("verify", f"{salt}:{code}")


def new_code(length: int) -> str:
    return f"{secrets.randbelow(10**length):0{length}d}"


def _body(locale: str, code: str, ttl: int) -> str:
    lang = "zh" if locale.lower().startswith("zh") else "en"
    return BODIES[lang].format(code=code, minutes=max(1, ttl // 60))


def _recent_counts_stmt(with_ip: bool) -> Any:
    created = Verification.created_at
    return select(
        func.count().filter(created >= bindparam("t_since")),
        func.count().filter(and_(created >= bindparam("n_since"), Verification.to_index == bindparam("idx"))),
        func.count().filter(and_(created >= bindparam("i_since"), Verification.ip == bindparam("ip")))
        if with_ip
        else literal(0),
    ).where(created >= bindparam("since"))


# Built once: a statement object keeps its cache key (and the tenant guard's) across calls.
_RECENT_COUNTS = {True: _recent_counts_stmt(True), False: _recent_counts_stmt(False)}


async def _recent_counts(
    session: AsyncSession, to_index: str, ip: str | None, now: dt.datetime
) -> tuple[int, int, int]:
    """Verifications of the tenant, of the number and of the IP within their windows: one query."""
    row = (await session.execute(_RECENT_COUNTS[bool(ip)], _count_params(to_index, ip, now))).one()
    return int(row[0]), int(row[1]), int(row[2])


def _count_params(to_index: str, ip: str | None, now: dt.datetime) -> dict[str, Any]:
    since = {
        f"{k}_since": now - dt.timedelta(seconds=w)
        for k, (_, w) in (("t", PER_TENANT), ("n", PER_NUMBER), ("i", PER_IP))
    }
    params: dict[str, Any] = {**since, "since": min(since.values()), "idx": to_index}
    if ip:
        params["ip"] = ip
    else:
        del params["i_since"]
    return params


def _insert_counting_stmt(with_ip: bool) -> Any:
    """PostgreSQL: the new verification's insert as a data-modifying CTE of the recent counts'
    ``SELECT`` (one round trip; the counts see the rows from before the insert, as when they
    ran first). A refused start raises, and its transaction, insert included, rolls back."""
    t = table_of(Verification)
    ins = insert(t).values({c.name: bindparam(f"v_{c.name}", type_=c.type) for c in t.c})
    counts = _recent_counts_stmt(with_ip).add_cte(ins.cte("ins_verification"))
    # and what the compliance check reads of the recipient (its lists, the word versions)
    return counts.add_columns(compliance.lookups_column().label("lookups"))


_INSERT_COUNTING: dict[bool, Any] = {}


async def _insert_counting(
    session: AsyncSession, v: Verification, ip: str | None, now: dt.datetime, addr: compliance.Address
) -> tuple[tuple[int, int, int], Any]:
    """Insert ``v`` (complete: every column set), count the recent verifications (see
    :func:`_recent_counts`) and read the compliance check's lookups of ``addr`` in one
    statement (PostgreSQL); returns the counts and the lookups."""
    stmt = _INSERT_COUNTING.get(bool(ip))
    if stmt is None:
        stmt = _INSERT_COUNTING[bool(ip)] = _insert_counting_stmt(bool(ip))
    values = {f"v_{c.name}": getattr(v, attr) for attr, c in _COLUMN_ATTRS}
    params = {**_count_params(v.to_index, ip, now), **values, **compliance.lookup_params(addr)}
    row = (await session.execute(stmt, params)).one()
    return (int(row[0]), int(row[1]), int(row[2])), row.lookups or []


_COLUMN_ATTRS = [(a.key, a.columns[0]) for a in Verification.__mapper__.column_attrs]


async def _enforce_limits(
    session: AsyncSession,
    to_index: str,
    ip: str | None,
    now: dt.datetime,
    counts: tuple[int, int, int] | None = None,
) -> None:
    per_tenant, per_number, per_ip = counts or await _recent_counts(session, to_index, ip, now)
    limit, window = PER_TENANT
    if per_tenant >= limit:
        raise VerifyLimited(
            f"at most {limit} verifications per {window} s for this account",
            field=None,
            rule="per_tenant",
            retry_after=window,
        )
    limit, window = PER_NUMBER
    if per_number >= limit:
        raise VerifyLimited(
            f"at most {limit} verifications per {window} s for one number",
            field="to",
            rule="per_number",
            retry_after=window,
        )
    if ip:
        limit, window = PER_IP
        if per_ip >= limit:
            raise VerifyLimited(
                f"at most {limit} verifications per {window} s from one IP address",
                field=None,
                rule="per_ip",
                retry_after=window,
            )


async def _deliver(
    session: AsyncSession,
    v: Verification,
    code: str,
    decision: compliance.ComplianceDecision | None = None,
    *,
    stored: bool = False,
) -> None:
    """Send ``code`` on the verification's channel (in the caller's transaction); ``decision``:
    the compliance check :func:`start` made already (the pipeline does not repeat it).

    SMS: the verification's own writes (message id, sealed code, fallback job) go first; the
    send comes last because it ends holding the tenant's quota row until commit, and every
    send of the tenant waits for that row."""
    ttl = math.ceil((v.expires_at - utcnow()).total_seconds())
    if v.channel == "sms":
        from tessera.connect.service.send import send_message

        if stored:  # inserted already, message id and sealed code included (see start)
            assert v.message_id is not None
            message_id = v.message_id
        else:
            message_id = uuid7()
            v.message_id = message_id
            if v.fallback_after is not None:
                v.code_sealed = code
            await session.flush()
        if v.fallback_after is not None:
            await jobs.enqueue(
                session,
                "verify.fallback",
                {"verification_id": str(v.id), "send": v.sends},
                queue=QUEUE,
                run_at=utcnow() + dt.timedelta(seconds=v.fallback_after),
            )
        body = _body(v.locale, code, ttl)
        await send_message(
            session,
            MessageIn(
                to=v.to,
                body=body,
                reference=f"verify:{v.id}",
                metadata={"verification_id": str(v.id)},
                **{"class": "verification"},
            ),
            decision=decision,
            message_id=message_id,
        )
    else:  # voice
        if not stored:
            v.code_sealed = code
        await jobs.enqueue(
            session, "verify.voice_call", {"verification_id": str(v.id), "send": v.sends}, queue=QUEUE
        )


def _new_verification(
    data: VerifyIn, to: str, index: str, ip: str | None, code: str, now: dt.datetime, *, complete: bool
) -> Verification:
    """The verification row of :func:`start`; ``complete``: every column set here (tenant,
    message id, sealed code, timestamps), for an insert outside the ORM's flush."""
    salt = secrets.token_hex(16)
    fallback = data.fallback_after_seconds if data.channel == "sms" else None
    v = Verification(
        id=uuid7(),
        channel=data.channel,
        to=to,
        to_index=index,
        template=data.template,
        locale=data.locale,
        code_length=data.code_length,
        code_salt=salt,
        code_hash=_digest(salt, code),
        status="pending",
        expires_at=now + dt.timedelta(seconds=data.ttl_seconds),
        checks=0,
        sends=1,
        last_sent_at=now,
        ip=ip,
        fallback_after=fallback,
        voice_used=False,
        created_at=now,
    )
    if complete:
        v.tenant_id = context.current_tenant_id()
        v.updated_at = now
        v.message_id = uuid7() if data.channel == "sms" else None
        v.code_sealed = code if data.channel != "sms" or fallback is not None else None
        v.delivered_at = v.approved_at = None
        v.voice_call_id = v.voice_status = None
    return v


async def start(session: AsyncSession, data: VerifyIn) -> Verification:
    """Create a verification and send its code; a refusal (422/429) leaves nothing written: on
    PostgreSQL the row goes in with the limits' counts and the refusal rolls the transaction back."""
    if data.channel == "email":
        raise VerifyInvalid(
            "the email channel is not available for verification codes yet",
            field="channel",
            rule="channel_unavailable",
        )
    addr = compliance.normalize_address(data.to, field="to")
    if addr.kind != "phone":
        raise VerifyInvalid("sms and voice need a phone number", field="to", rule="invalid_phone")
    now = utcnow()
    index = blind_index("phone", addr.value)
    ip = str(data.client_ip) if data.client_ip is not None else None
    code = new_code(data.code_length)
    postgres = session.get_bind().dialect.name == "postgresql"
    v = _new_verification(data, addr.value, index, ip, code, now, complete=postgres)
    lookups = None
    if postgres:  # the row goes in with the counts' read (a refusal below rolls it back)
        counts, lookups = await _insert_counting(session, v, ip, now, addr)
        await _enforce_limits(session, index, ip, now, counts)
    else:
        await _enforce_limits(session, index, ip, now)
    decision = await compliance.check_outbound(
        session,
        channel="sms" if data.channel == "sms" else "voice",
        message_class="verification",
        to_e164_or_email=addr.value,
        body=_body(data.locale, code, data.ttl_seconds),
        now=now,
        lookups=lookups,
    )
    if decision.verdict != "allow":
        raise VerifyInvalid(
            decision.message or "the recipient cannot receive codes",
            field="to",
            rule=decision.code or "refused",
        )
    if not postgres:
        session.add(v)
    await _deliver(session, v, code, decision, stored=postgres)
    # Verification traffic, like messages, is recorded on its own row (sends, checks, status,
    # voice call), not in the audit log: an audit row per code would serialise every send of
    # the tenant on the audit chain's head.
    return v


async def get(session: AsyncSession, verification_id: uuid.UUID) -> Verification:
    v = (
        await session.execute(select(Verification).where(Verification.id == verification_id))
    ).scalar_one_or_none()
    if v is None:
        raise VerificationNotFound()
    return v


def _expire_if_due(v: Verification, now: dt.datetime) -> None:
    if v.status == "pending" and now >= v.expires_at:
        v.status = "expired"
        v.code_sealed = None


async def check(session: AsyncSession, verification_id: uuid.UUID, code: str) -> CheckResult:
    v = await get(session, verification_id)
    now = utcnow()
    _expire_if_due(v, now)
    if v.status == "refused" or (v.status == "pending" and v.checks >= MAX_CHECKS):
        v.status = "refused"
        raise VerifyLimited(
            f"at most {MAX_CHECKS} checks per verification; start a new one",
            field="code",
            rule="max_checks",
            retry_after=0,
        )
    if v.status != "pending":
        return CheckResult(v.id, False, 0)
    v.checks += 1
    if hmac.compare_digest(v.code_hash, _digest(v.code_salt, code)):
        v.status = "approved"
        v.approved_at = now
        v.code_sealed = None
        return CheckResult(v.id, True, MAX_CHECKS - v.checks)
    if v.checks >= MAX_CHECKS:
        v.status = "refused"
        v.code_sealed = None
    return CheckResult(v.id, False, MAX_CHECKS - v.checks)


async def resend(session: AsyncSession, verification_id: uuid.UUID) -> Verification:
    """Send a new code for the same verification (the old one stops working)."""
    v = await get(session, verification_id)
    now = utcnow()
    _expire_if_due(v, now)
    if v.status != "pending":
        raise VerificationClosed(f"the verification is {v.status}")
    wait = RESEND_COOLDOWN - (now - v.last_sent_at).total_seconds()
    if wait > 0:
        raise VerifyLimited(
            f"wait {int(wait) + 1} s before sending another code",
            field=None,
            rule="resend_cooldown",
            retry_after=int(wait) + 1,
        )
    if v.sends >= MAX_SENDS:
        raise VerifyLimited(
            f"at most {MAX_SENDS} codes per verification", field=None, rule="max_sends", retry_after=0
        )
    code = new_code(v.code_length)
    v.code_salt = secrets.token_hex(16)
    v.code_hash = _digest(v.code_salt, code)
    v.sends += 1
    v.last_sent_at = now
    v.delivered_at = None
    await _deliver(session, v, code)
    return v


# --- delivery, fallback and voice --------------------------------------------------------------


async def message_status(
    session: AsyncSession, message_id: uuid.UUID
) -> tuple[str, dt.datetime | None] | None:
    row = (
        await session.execute(select(Message.status, Message.done_at).where(Message.id == message_id))
    ).first()
    return (row[0], row[1]) if row else None


async def voice_call(session: AsyncSession, v: Verification) -> str:
    """Synthesise the sealed code (espeak-ng, language from the locale) and call the number."""
    code = v.code_sealed
    if not code:
        return "skipped"
    lang = language_of(v.locale)
    tmp = voice_dir() / "tmp" / f"{v.id}-{v.sends}.wav"
    await synthesize_async(code_sentence(code, lang), tmp, language=lang)
    try:
        result = await get_voice_gateway().call(v.to, tmp, reference=f"verify:{v.id}")
    finally:
        tmp.unlink(missing_ok=True)
    v.voice_used = True
    v.voice_call_id = result.call_id
    v.voice_status = str(result.status)
    v.code_sealed = None
    if result.status == "answered" and v.delivered_at is None:
        v.delivered_at = utcnow()
    return str(result.status)


async def run_fallback(session: AsyncSession, verification_id: uuid.UUID, send: int) -> str:
    """Job body: SMS delivered in time → nothing; otherwise read the code out by voice."""
    v = (
        await session.execute(select(Verification).where(Verification.id == verification_id))
    ).scalar_one_or_none()
    if v is None or v.sends != send:
        return "stale"
    _expire_if_due(v, utcnow())
    if v.status != "pending":
        v.code_sealed = None
        return v.status
    got = await message_status(session, v.message_id) if v.message_id else None
    if got is not None and got[0] == "delivered":
        v.delivered_at = got[1] or utcnow()
        v.code_sealed = None
        return "delivered"
    return await voice_call(session, v)


async def run_voice(session: AsyncSession, verification_id: uuid.UUID, send: int) -> str:
    v = (
        await session.execute(select(Verification).where(Verification.id == verification_id))
    ).scalar_one_or_none()
    if v is None or v.sends != send or v.status != "pending":
        return "stale"
    return await voice_call(session, v)


# --- statistics --------------------------------------------------------------------------------


async def stats(session: AsyncSession, since: dt.datetime, until: dt.datetime) -> list[TemplateStats]:
    """Per template: sent, delivered (SMS receipt or answered call), approved, conversion, delivery time."""
    stmt = (
        select(
            Verification.template,
            Verification.status,
            Verification.created_at,
            Verification.voice_used,
            Verification.delivered_at,
            Verification.voice_status,
            Message.status,
            Message.done_at,
        )
        .outerjoin(Message, Message.id == Verification.message_id)
        .where(Verification.created_at >= since, Verification.created_at < until)
    )
    groups: dict[str, dict[str, object]] = {}
    for template, status, created, voice_used, delivered_at, voice_status, msg_status, done_at in (
        await session.execute(stmt)
    ).all():
        g = groups.setdefault(template, {"sent": 0, "delivered": 0, "approved": 0, "voice": 0, "times": []})
        g["sent"] += 1  # type: ignore[operator]
        at = delivered_at or (done_at if msg_status == "delivered" else None)
        if at is not None or voice_status == "answered":
            g["delivered"] += 1  # type: ignore[operator]
            if at is not None:
                g["times"].append(max(0.0, (at - created).total_seconds()))  # type: ignore[attr-defined]
        if status == "approved":
            g["approved"] += 1  # type: ignore[operator]
        if voice_used:
            g["voice"] += 1  # type: ignore[operator]
    out = []
    for template, g in sorted(groups.items()):
        times: list[float] = g["times"]  # type: ignore[assignment]
        sent: int = g["sent"]  # type: ignore[assignment]
        out.append(
            TemplateStats(
                template=template,
                sent=sent,
                delivered=g["delivered"],
                approved=g["approved"],  # type: ignore[arg-type]
                voice_fallbacks=g["voice"],
                conversion_rate=round(g["approved"] / sent, 4) if sent else 0.0,  # type: ignore[arg-type,operator]
                avg_seconds_to_delivery=round(sum(times) / len(times), 3) if times else None,
                p50_seconds_to_delivery=round(statistics.median(times), 3) if times else None,
            )
        )
    return out
