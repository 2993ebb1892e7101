"""The compliance engine: one check for the messaging pipeline, list management and reviews.

Verdicts of :func:`check_outbound` (strongest first):

- ``reject``: the recipient must not get this message at all (on the block or empty-number
  list, opted out, frequency cap reached). Final; the pipeline stores it as rejected.
- ``block``: the content carries a blocked word. Final.
- ``hold``: a word asks for human review (``message.held_for_review``: call
  :func:`hold_for_review`), or a marketing message falls in the tenant's quiet hours
  (``message.quiet_hours``: schedule it at ``not_before``).
- ``allow``: send ``replaced_body`` (replace-words applied).

Scope of each rule: block/empty lists and words apply to every class; opt-outs apply to
marketing and notification (a verification code is asked for by the recipient); quiet hours
and frequency caps to marketing only. The tenant's allow list overrides the *global* block
list and exempts from the frequency cap; it never overrides an opt-out or the tenant's own
block list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance.errors import (
    ComplianceInvalid,
    DuplicateEntry,
    DuplicateWord,
    EntryNotFound,
    OptOutNotFound,
    ReviewDecided,
    ReviewNotFound,
    WordNotFound,
)
from tessera.connect.compliance.html_text import TemplateText, html_text, replace_text
from tessera.connect.compliance.matcher import (
    DEFAULT_OPT_OUT_KEYWORDS,
    Action,
    Hit,
    Matcher,
    MatcherCache,
    ScanResult,
    Verdict,
    WordEntry,
    is_opt_out,
)
from tessera.connect.compliance.models import (
    ComplianceSettings,
    ComplianceWord,
    GlobalListEntry,
    GlobalWord,
    ListEntry,
    OptOut,
    Review,
)
from tessera.connect.compliance.normalize import normalize_utf8
from tessera.connect.compliance.repository import (
    GlobalWordRepository,
    ListEntryRepository,
    OptOutRepository,
    ReviewRepository,
    SentCounter,
    SettingsRepository,
    VersionRepository,
    WordRepository,
    lists_and_versions,
    lists_and_versions_column,
    lists_and_versions_params,
    parse_lists_and_versions,
    tenant_timezone,
)
from tessera.core import context
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow
from tessera.core.phone import InvalidPhone, normalize_phone

GLOBAL_SCOPE = "global"


@dataclass(frozen=True, slots=True)
class ComplianceDecision:
    verdict: str  # allow | hold | block | reject
    code: str | None
    replaced_body: str
    hits: tuple[Hit, ...] = ()
    not_before: dt.datetime | None = None
    message: str = ""
    # email: the subject and HTML part with replace-words applied (None for other channels)
    replaced_subject: str | None = None
    replaced_html: str | None = None
    part: str | None = None  # email: "subject" or "html" when that part decided, not the body

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


@dataclass(frozen=True, slots=True)
class Address:
    kind: str  # phone | email
    value: str


def normalize_address(raw: str, *, field: str = "to", channel: str | None = None) -> Address:
    """E.164 phone or lower-cased email (a WeChat openid on channel ``wechat``); 422 naming
    ``field`` otherwise."""
    raw = raw.strip()
    if channel == "wechat" and "@" not in raw and not raw.startswith("+"):
        if not raw or len(raw) > 64:
            raise ComplianceInvalid("not a WeChat openid", field=field, rule="invalid_openid")
        return Address("openid", raw)
    if "@" in raw:
        local, _, domain = raw.rpartition("@")
        if not local or "." not in domain or " " in raw or len(raw) > 320:
            raise ComplianceInvalid("not a valid email address", field=field, rule="invalid_email")
        return Address("email", f"{local}@{domain}".lower())
    try:
        return Address("phone", normalize_phone(raw, "CN", field=field))
    except InvalidPhone as exc:
        raise ComplianceInvalid(exc.message, field=field, rule="invalid_phone") from None


# --- matcher -----------------------------------------------------------------------------------

_cache = MatcherCache()
_global_loaded: list[int] = [-1]


class _Miss(Exception):
    pass


def _raise_miss() -> list[WordEntry]:
    raise _Miss


def _entry(w: ComplianceWord | GlobalWord) -> WordEntry:
    return WordEntry(w.word, w.category, Action(w.action), w.replacement, w.whole_word)


async def get_matcher(session: AsyncSession, versions: dict[str, int] | None = None) -> Matcher:
    """The tenant's matcher (global + tenant words), rebuilt only when a version changed;
    ``versions``: those of :func:`matcher_scopes`, read already by the caller."""
    tid = str(context.current_tenant_id())
    if versions is None:
        versions = await VersionRepository(session).versions([GLOBAL_SCOPE, tid])
    gv = versions.get(GLOBAL_SCOPE, 0)
    if _global_loaded[0] != gv:
        rows = await GlobalWordRepository(session).listing()
        _cache.set_global([_entry(w) for w in rows], gv)
        _global_loaded[0] = gv
    tv = versions.get(tid, 0)
    try:
        return _cache.get(tid, tv, _raise_miss)
    except _Miss:
        entries = [_entry(w) for w in await WordRepository(session).listing()]
        return _cache.get(tid, tv, lambda: entries)


def matcher_builds() -> int:
    return _cache.builds


# --- the check ---------------------------------------------------------------------------------

_released: ContextVar[bool] = ContextVar("compliance_released", default=False)


@contextlib.contextmanager
def released_after_review() -> Iterator[None]:
    """Inside this block, words that ask for review do not hold again (an approved review)."""
    token = _released.set(True)
    try:
        yield
    finally:
        _released.reset(token)


def _local_minutes(now: dt.datetime, tz: str) -> tuple[dt.datetime, int]:
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    local = now.astimezone(zone)
    return local, local.hour * 60 + local.minute


def quiet_until(now: dt.datetime, tz: str, start: int, end: int) -> dt.datetime | None:
    """End of the quiet window containing ``now`` (UTC), or None when ``now`` is outside it."""
    if start == end:
        return None
    local, minutes = _local_minutes(now, tz)
    inside = start <= minutes < end if start < end else (minutes >= start or minutes < end)
    if not inside:
        return None
    day = local.date() if minutes < end else local.date() + dt.timedelta(days=1)
    end_local = dt.datetime.combine(day, dt.time(end // 60, end % 60), tzinfo=local.tzinfo)
    return end_local.astimezone(dt.UTC)


async def _settings(session: AsyncSession) -> ComplianceSettings | None:
    key = "compliance_settings"
    if key not in session.info:
        session.info[key] = await SettingsRepository(session).current()
    return session.info[key]  # type: ignore[no-any-return]


async def check_outbound(
    session: AsyncSession,
    *,
    channel: str,
    message_class: str,
    to_e164_or_email: str,
    body: str,
    now: dt.datetime | None = None,
    subject: str | None = None,
    html: str | None = None,
    lookups: Any = None,
) -> ComplianceDecision:
    """Decide whether one outbound message may go (tenant in scope). Writes nothing.
    An email's ``subject`` and ``html`` part are checked with the body (:class:`EmailParts`).
    ``lookups``: the value of :func:`lookups_column` the caller read in a statement of its own
    with :func:`lookup_params` of this recipient (one round trip less)."""
    addr = normalize_address(to_e164_or_email, channel=channel)
    parts = [EmailParts(subject or "", html)] if subject is not None or html is not None else None
    [decision] = await check_outbound_many(
        session,
        channel=channel,
        message_class=message_class,
        recipients=[(addr, body)],
        now=now,
        email_parts=parts,
        lookups=lookups,
    )
    return decision


def lookups_column() -> Any:
    """What a check reads (the tenant's and the global lists of the recipients, the word lists'
    versions) as one JSON column, for a caller's own statement (see :func:`check_outbound`)."""
    return lists_and_versions_column()


def lookup_params(addr: Address) -> dict[str, Any]:
    """The bind parameters of :func:`lookups_column` for one recipient (tenant in scope)."""
    return lists_and_versions_params(
        [address_index(addr)], [addr.value], [GLOBAL_SCOPE, str(context.current_tenant_id())]
    )


@dataclass(frozen=True, slots=True)
class EmailParts:
    """The parts of an email checked besides its text body: the subject, and the text content
    of the HTML part (tags stripped with :mod:`html.parser`; replace-words are applied inside
    its text nodes only, never to tags or attributes)."""

    subject: str
    html: str | None = None
    # optional: the HTML template ``html`` was rendered from and the values filled in (escaped);
    # a batch then parses the template once instead of every rendering (:class:`TemplateText`)
    html_template: str | None = None
    values: tuple[tuple[str, str], ...] = ()


class _PartScan:
    """The combined scan of an email's subject and HTML part (one per distinct pair)."""

    __slots__ = ("hits", "html", "part", "subject", "verdict")

    def __init__(self, matcher: Matcher, parts: EmailParts, templates: dict[str, TemplateText]) -> None:
        subject = matcher.scan(parts.subject)
        scans = [subject]
        self.subject = subject.replaced_text
        self.html = parts.html
        if parts.html is not None:
            text: str | None = None
            if parts.html_template is not None:
                tt = templates.get(parts.html_template)
                if tt is None:
                    from tessera.connect.service.templates import VARIABLE

                    tt = templates[parts.html_template] = TemplateText(parts.html_template, VARIABLE)
                text = tt.text(dict(parts.values))
            content = matcher.scan(html_text(parts.html) if text is None else text)
            scans.append(content)
            if content.hits:
                self.html = replace_text(parts.html, lambda t: matcher.scan(t).replaced_text)
        self.verdict = max((sc.verdict for sc in scans), key=_VERDICT_RANK.__getitem__)
        self.part = "subject" if subject.verdict is self.verdict else "html"
        self.hits = tuple(h for sc in scans for h in sc.hits)


_VERDICT_RANK = {Verdict.ALLOW: 0, Verdict.HOLD: 1, Verdict.BLOCK: 2}


def _worst(a: Verdict, b: Verdict) -> Verdict:
    return a if _VERDICT_RANK[a] >= _VERDICT_RANK[b] else b


def address_index(addr: Address) -> str:
    """The blind index messages and opt-outs of ``addr`` are stored under."""
    return blind_index(addr.kind, addr.value)


async def check_outbound_many(
    session: AsyncSession,
    *,
    channel: str,
    message_class: str,
    recipients: Sequence[tuple[Address, str]],
    indexes: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    email_parts: Sequence[EmailParts] | None = None,
    lookups: Any = None,
) -> list[ComplianceDecision]:
    """:func:`check_outbound` for many ``(address, rendered body)`` pairs, in order. Writes nothing.

    ``email_parts`` (email, one per recipient): the subject and HTML part are checked like the
    body (the strongest verdict of the three wins; hits of all three are reported) and the
    decision carries them with replace-words applied (``replaced_subject``, ``replaced_html``).

    Built for 10,000-recipient batches: one query per kind of lookup (tenant lists, global
    lists, opt-outs, marketing counts) whatever the number of recipients, one matcher scan per
    distinct body. Repeated recipients count against the frequency cap within the batch too.
    ``indexes`` are the addresses' blind indexes when the caller has them already."""
    now = now or utcnow()
    if not recipients:
        return []
    idx = list(indexes) if indexes is not None else [address_index(a) for a, _ in recipients]
    # the lists and the word lists' versions in one round trip (or read by the caller)
    if lookups is not None:
        tenant_lists, global_lists, versions = parse_lists_and_versions(lookups)
    else:
        tenant_lists, global_lists, versions = await lists_and_versions(
            session, idx, {a.value for a, _ in recipients}, [GLOBAL_SCOPE, str(context.current_tenant_id())]
        )
    opted: set[str] = set()
    if message_class != "verification":
        opted = await OptOutRepository(session).opted_out(channel, idx)
    matcher = await get_matcher(session, versions)
    released = _released.get()
    bodies = list(dict.fromkeys(body for _, body in recipients))
    scans = dict(zip(bodies, matcher.scan_many(bodies), strict=True))  # None: no hit
    st = await _settings(session) if message_class == "marketing" else None
    quiet: dt.datetime | None = None
    if st is not None and st.quiet_start is not None and st.quiet_end is not None:
        tz = await tenant_timezone(session, context.current_tenant_id())
        quiet = quiet_until(now, tz, st.quiet_start, st.quiet_end)
    cap = st.cap_count if st is not None else None
    counts: dict[str, int] = {}
    if cap is not None and st is not None:
        since = now - dt.timedelta(hours=st.cap_window_hours)
        phones = [i for (a, _), i in zip(recipients, idx, strict=True) if a.kind == "phone"]
        counts = await SentCounter(session).marketing_since_many(phones, since)
    out: list[ComplianceDecision] = []
    part_scans: dict[EmailParts, _PartScan] = {}
    html_templates: dict[str, TemplateText] = {}
    for i, ((addr, body), index) in enumerate(zip(recipients, idx, strict=True)):
        tl = tenant_lists.get(index, _NONE)
        gl = global_lists.get(addr.value, _NONE)
        allowed = "allow" in tl
        if "empty" in tl or "empty" in gl:
            out.append(_refusal(_EMPTY, body))
            continue
        if "block" in tl or ("block" in gl and not allowed):
            out.append(_refusal(_BLOCKED, body))
            continue
        if index in opted:
            out.append(_refusal(_OPTED_OUT, body))
            continue
        scan = scans[body] or ScanResult((), Verdict.ALLOW, body)
        verdict, hits = scan.verdict, scan.hits
        extra: dict[str, Any] = {}
        if email_parts is not None:
            parts = email_parts[i]
            ps = part_scans.get(parts)
            if ps is None:
                ps = part_scans[parts] = _PartScan(matcher, parts, html_templates)
            if _VERDICT_RANK[ps.verdict] > _VERDICT_RANK[verdict]:
                extra["part"] = ps.part
            verdict, hits = _worst(verdict, ps.verdict), hits + ps.hits
            extra.update(replaced_subject=ps.subject, replaced_html=ps.html)
        if verdict is Verdict.BLOCK:
            out.append(
                ComplianceDecision(
                    "block",
                    "message.blocked_word",
                    body,
                    hits,
                    message="the message contains a blocked word",
                    part=extra.get("part"),
                )
            )
            continue
        if verdict is Verdict.HOLD and not released:
            out.append(
                ComplianceDecision(
                    "hold",
                    "message.held_for_review",
                    scan.replaced_text,
                    hits,
                    message="the message needs review",
                    **extra,
                )
            )
            continue
        if message_class == "marketing":
            # The cap is counted before quiet hours: deferring a message must not let it skip the cap.
            if cap is not None and st is not None and not allowed and addr.kind == "phone":
                sent = counts.get(index, 0)
                if sent >= cap:
                    out.append(
                        ComplianceDecision(
                            "reject",
                            "message.frequency_capped",
                            scan.replaced_text,
                            hits,
                            message=f"{sent} marketing messages in {st.cap_window_hours} h",
                        )
                    )
                    continue
                counts[index] = sent + 1
            if quiet is not None:
                out.append(
                    ComplianceDecision(
                        "hold",
                        "message.quiet_hours",
                        scan.replaced_text,
                        hits,
                        quiet,
                        message="marketing messages wait for the end of quiet hours",
                        **extra,
                    )
                )
                continue
        out.append(ComplianceDecision("allow", None, scan.replaced_text, hits, **extra))
    return out


_NONE: frozenset[str] = frozenset()
_EMPTY = ComplianceDecision(
    "reject", "message.recipient_empty_number", "", message="the number is not in service"
)
_BLOCKED = ComplianceDecision(
    "reject", "message.recipient_blocked", "", message="the recipient is on a block list"
)
_OPTED_OUT = ComplianceDecision(
    "reject", "message.recipient_opted_out", "", message="the recipient opted out"
)


def _refusal(template: ComplianceDecision, body: str) -> ComplianceDecision:
    return dataclasses.replace(template, replaced_body=body)


# --- words -------------------------------------------------------------------------------------


def _validate_word(word: str, action: str, replacement: str | None) -> str:
    word = word.strip()
    if not normalize_utf8(word):
        raise ComplianceInvalid(
            "the word is empty after normalisation", field="word", rule="empty_after_normalisation"
        )
    if action not in ("block", "hold", "replace"):
        raise ComplianceInvalid("action must be block, hold or replace", field="action", rule="enum")
    if replacement is not None and action != "replace":
        raise ComplianceInvalid(
            "a replacement needs action 'replace'", field="replacement", rule="replace_only"
        )
    return word


async def add_word(
    session: AsyncSession,
    *,
    word: str,
    category: str,
    action: str,
    replacement: str | None = None,
    whole_word: bool = False,
) -> ComplianceWord:
    word = _validate_word(word, action, replacement)
    repo = WordRepository(session)
    if await repo.by_word(word) is not None:
        raise DuplicateWord(field="word")
    row = await repo.create(
        ComplianceWord(
            word=word, category=category, action=action, replacement=replacement, whole_word=whole_word
        )
    )
    await VersionRepository(session).bump(str(context.current_tenant_id()))
    await audit.record(
        session,
        "compliance.word_add",
        "compliance_word",
        row.id,
        after={"word": word, "category": category, "action": action},
    )
    return row


async def list_words(session: AsyncSession, category: str | None = None) -> list[ComplianceWord]:
    return await WordRepository(session).listing(category)


async def list_global_words(session: AsyncSession) -> list[GlobalWord]:
    """The operator's global words (read-only for tenants)."""
    return await GlobalWordRepository(session).listing()


async def delete_word(session: AsyncSession, word_id: uuid.UUID) -> None:
    repo = WordRepository(session)
    row = await repo.get(word_id)
    if row is None:
        raise WordNotFound()
    before = {"word": row.word, "category": row.category, "action": row.action}
    await repo.delete(row)
    await VersionRepository(session).bump(str(context.current_tenant_id()))
    await audit.record(session, "compliance.word_delete", "compliance_word", word_id, before=before)


async def add_global_word(
    session: AsyncSession,
    *,
    word: str,
    category: str,
    action: str,
    replacement: str | None = None,
    whole_word: bool = False,
) -> GlobalWord:
    """Operator: add a word to the global list (platform session)."""
    word = _validate_word(word, action, replacement)
    if any(w.word == word for w in await GlobalWordRepository(session).listing()):
        raise DuplicateWord(field="word")
    row = GlobalWord(
        word=word, category=category, action=action, replacement=replacement, whole_word=whole_word
    )
    session.add(row)
    await session.flush()
    await VersionRepository(session).bump(GLOBAL_SCOPE)
    return row


async def add_global_entry(
    session: AsyncSession, *, list_kind: str, value: str, note: str = ""
) -> GlobalListEntry:
    """Operator: put a number or email on the global block or empty-number list."""
    if list_kind not in ("block", "empty"):
        raise ComplianceInvalid("global lists are 'block' and 'empty'", field="list", rule="enum")
    addr = normalize_address(value, field="value")
    row = GlobalListEntry(list_kind=list_kind, kind=addr.kind, value=addr.value, note=note)
    session.add(row)
    await session.flush()
    return row


# --- block / allow / empty lists ---------------------------------------------------------------


async def add_entry(session: AsyncSession, *, list_kind: str, value: str, note: str = "") -> ListEntry:
    if list_kind not in ("block", "allow", "empty"):
        raise ComplianceInvalid("list must be block, allow or empty", field="list", rule="enum")
    addr = normalize_address(value, field="value")
    index = blind_index(addr.kind, addr.value)
    repo = ListEntryRepository(session)
    if await repo.find(list_kind, index) is not None:
        raise DuplicateEntry(field="value")
    row = await repo.create(
        ListEntry(list_kind=list_kind, kind=addr.kind, value=addr.value, value_index=index, note=note)
    )
    await audit.record(
        session,
        "compliance.list_add",
        "compliance_list_entry",
        row.id,
        after={"list": list_kind, "kind": addr.kind, addr.kind: addr.value},
    )
    return row


async def list_entries(session: AsyncSession, list_kind: str) -> list[ListEntry]:
    if list_kind not in ("block", "allow", "empty"):
        raise ComplianceInvalid("list must be block, allow or empty", field="list", rule="enum")
    return await ListEntryRepository(session).listing(list_kind)


async def delete_entry(session: AsyncSession, entry_id: uuid.UUID) -> None:
    repo = ListEntryRepository(session)
    row = await repo.get(entry_id)
    if row is None:
        raise EntryNotFound()
    before = {"list": row.list_kind, "kind": row.kind, row.kind: row.value}
    await repo.delete(row)
    await audit.record(session, "compliance.list_delete", "compliance_list_entry", entry_id, before=before)


# --- opt-outs ----------------------------------------------------------------------------------


async def opt_out(session: AsyncSession, *, channel: str, address: str, source: str = "api") -> OptOut:
    """Opt ``address`` out of the tenant's ``channel`` messages (idempotent)."""
    addr = normalize_address(address, field="address", channel=channel)
    index = blind_index(addr.kind, addr.value)
    repo = OptOutRepository(session)
    row = await repo.find(channel, index)
    if row is not None:
        return row
    row = await repo.create(OptOut(channel=channel, address=addr.value, address_index=index, source=source))
    await audit.record(
        session,
        "compliance.opt_out",
        "compliance_opt_out",
        row.id,
        after={"channel": channel, addr.kind: addr.value, "source": source},
    )
    return row


async def is_opted_out(session: AsyncSession, *, channel: str, address: str) -> bool:
    addr = normalize_address(address, field="address", channel=channel)
    return await OptOutRepository(session).find(channel, blind_index(addr.kind, addr.value)) is not None


async def list_opt_outs(session: AsyncSession, channel: str | None = None, limit: int = 100) -> list[OptOut]:
    return await OptOutRepository(session).listing(channel, limit)


async def remove_opt_out(session: AsyncSession, opt_out_id: uuid.UUID) -> None:
    repo = OptOutRepository(session)
    row = await repo.get(opt_out_id)
    if row is None:
        raise OptOutNotFound()
    before = {"channel": row.channel, "source": row.source}
    await repo.delete(row)
    await audit.record(session, "compliance.opt_in", "compliance_opt_out", opt_out_id, before=before)


# --- settings ----------------------------------------------------------------------------------


async def get_settings(session: AsyncSession) -> ComplianceSettings:
    row = await SettingsRepository(session).current()
    return (
        row
        if row is not None
        else ComplianceSettings(cap_window_hours=24, opt_out_keywords=[], opt_out_reply="")
    )


def opt_out_keywords(st: ComplianceSettings | None) -> tuple[str, ...]:
    return tuple(st.opt_out_keywords) if st is not None and st.opt_out_keywords else DEFAULT_OPT_OUT_KEYWORDS


async def is_opt_out_text(session: AsyncSession, text: str) -> bool:
    return is_opt_out(text, opt_out_keywords(await SettingsRepository(session).current()))


# Settings that always have a value; ``null`` in a change resets them to these defaults.
SETTING_DEFAULTS: dict[str, Any] = {"cap_window_hours": 24, "opt_out_keywords": [], "opt_out_reply": ""}


async def update_settings(session: AsyncSession, changes: dict[str, Any]) -> ComplianceSettings:
    repo = SettingsRepository(session)
    row = await repo.current()
    if row is None:
        row = await repo.create(ComplianceSettings(**SETTING_DEFAULTS))
    changes = {
        k: (SETTING_DEFAULTS[k] if v is None and k in SETTING_DEFAULTS else v) for k, v in changes.items()
    }
    before = {k: getattr(row, k) for k in changes}
    for k, v in changes.items():
        setattr(row, k, v)
    if (row.quiet_start is None) != (row.quiet_end is None):
        raise ComplianceInvalid(
            "quiet hours need both a start and an end", field="quiet_hours", rule="both_or_neither"
        )
    await session.flush()
    session.info.pop("compliance_settings", None)
    await audit.record(
        session, "compliance.settings_update", "compliance_settings", row.id, before=before, after=changes
    )
    return row


# --- review queue ------------------------------------------------------------------------------

ReviewHook = Callable[[AsyncSession, Review, str], Awaitable[None]]
on_review_decision: list[ReviewHook] = []
"""Called with ``(session, review, "approved"|"rejected")`` in the deciding transaction."""


def _hit_json(h: Hit) -> dict[str, Any]:
    return {"word": h.word, "category": h.category, "action": str(h.action), "start": h.start, "end": h.end}


async def hold_for_review(
    session: AsyncSession,
    *,
    channel: str,
    message_class: str,
    to: str,
    body: str,
    decision: ComplianceDecision,
    payload: dict[str, Any],
) -> Review:
    """Park a held message. ``payload`` is the ``MessageIn`` (by alias) sent again on approval."""
    row = await ReviewRepository(session).create(
        Review(
            channel=channel,
            message_class=message_class,
            to=to,
            body=body,
            hits=[_hit_json(h) for h in decision.hits],
            reason=decision.code or "message.held_for_review",
            payload=payload,
            status="pending",
        )
    )
    await audit.record(session, "compliance.hold", "compliance_review", row.id, after={"reason": row.reason})
    return row


async def hold_many_for_review(
    session: AsyncSession,
    *,
    channel: str,
    message_class: str,
    held: Sequence[tuple[uuid.UUID, str, str, ComplianceDecision]],
) -> None:
    """One review per stored ``held`` message ``(message_id, to, body, decision)``: one multi-row
    insert and one audit row for the request. Approving a review releases its message."""
    if not held:
        return
    rows = [
        {
            "channel": channel,
            "message_class": message_class,
            "to": to,
            "body": body,
            "hits": [_hit_json(h) for h in d.hits],
            "reason": d.code or "message.held_for_review",
            "payload": {},
            "status": "pending",
            "message_id": mid,
        }
        for mid, to, body, d in held
    ]
    ids = await ReviewRepository(session).insert_many(rows)
    await audit.record(
        session,
        "compliance.hold",
        "compliance_review",
        ids[0] if len(ids) == 1 else None,
        after={"reason": rows[0]["reason"], "count": len(ids)},
    )


async def list_reviews(session: AsyncSession, status: str | None, limit: int = 100) -> list[Review]:
    return await ReviewRepository(session).listing(status, limit)


async def get_review(session: AsyncSession, review_id: uuid.UUID) -> Review:
    row = await ReviewRepository(session).get(review_id)
    if row is None:
        raise ReviewNotFound()
    return row


async def decide_review(
    session: AsyncSession, review_id: uuid.UUID, decision: str, note: str | None = None
) -> Review:
    row = await get_review(session, review_id)
    if row.status != "pending":
        raise ReviewDecided(f"the review is already {row.status}")
    row.status = decision
    row.decided_by = context.current_actor().label or context.current_actor().kind
    row.decided_at = utcnow()
    row.decision_note = note
    for hook in on_review_decision:
        await hook(session, row, decision)
    await session.flush()
    await audit.record(
        session,
        f"compliance.review_{decision}",
        "compliance_review",
        row.id,
        before={"status": "pending"},
        after={"status": decision, "message_id": row.message_id},
    )
    return row


async def _release(session: AsyncSession, review: Review, decision: str) -> None:
    """Default hook: a held message is released (approved) or rejected; a review that carries
    only a request (``payload``) sends it through the messaging pipeline on approval."""
    from tessera.connect.service import send

    if review.message_id is not None:
        if decision == "approved":
            await send.release_held(session, review.message_id)
        else:
            await send.reject_held(session, review.message_id, "compliance.review_rejected")
        return
    if decision != "approved" or not review.payload:
        return
    from tessera.connect.schemas import MessageIn

    with released_after_review():
        accepted = await send.send_message(session, MessageIn.model_validate(review.payload))
    review.message_id = accepted.id


on_review_decision.append(_release)
