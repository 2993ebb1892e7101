"""Email as a pipeline channel: the dispatcher's sender for channels of kind ``email``.

Same life as SMS and WeChat: ``POST /messages`` stores the message ``accepted`` with a dispatch
row; the dispatcher claims it (``queued``) and gives it to the :class:`EmailRunner` of its
channel, which renders the MIME message (text + HTML, List-Unsubscribe and one-click
List-Unsubscribe-Post), signs it (DKIM, :class:`RelaxedDkimSigner`) and sends it over the
channel's pool of SMTP connections. The SMTP reply decides the outcome, written in batched
transactions by :class:`EmailWriter`:

* 250 → ``submitted`` then ``delivered`` (the next hop took responsibility for the message);
  the Message-ID is kept as the carrier id, so a later DSN finds the message.
* 5xx → ``failed`` with a stable reason (:func:`classify`); a hard bounce of the address
  (x.1.x, x.2.x, or a bare 550/551/553) also puts the address on the tenant's block list, so
  the compliance check refuses later sends to it.
* 4xx, connection failures, timeouts → retried: the dispatch row goes back to the queue with
  exponential backoff (``retry_base_seconds`` x 2^(attempt-1), at most an hour, ±10 %), and
  after ``max_attempts`` the message fails with the last reason.

A worker takes its next message only once the writer has committed the previous result, like
the SMS link workers: a crash leaves at most the in-flight messages claimed, and the next
gateway sends those again (at least once, never lost).

The rendered subject and HTML part travel with the message in ``variables["$email"]`` (the
variables column is internal: not part of the API output), so email needs no schema change and
the dispatcher claims it with the same query as every other message.

Channel configuration (``settings`` of an ``email`` channel): ``host`` and ``from`` are
required; ``port`` (25), ``tls`` (none / starttls / tls), ``username``, ``pool_size`` (SMTP
connections, 4), ``concurrency`` (messages in progress, 4 x pool), ``reply_to``,
``bounce_address`` (envelope sender; default the From address), ``dkim_selector`` and
``dkim_domain``, ``unsubscribe_mailto``, ``unsubscribe_url`` (https; the channel's own
unsubscribe handler instead of Tessera's: ``{token}`` is replaced by the signed unsubscribe
token, ``{message_id}`` by the bare message id), ``retry_base_seconds`` (60), ``max_attempts``
(6), ``timeout`` (30). Without ``unsubscribe_url``, messages carry Tessera's own one-click link
``<TESSERA_PUBLIC_URL>/u/<signed token>`` when the public URL is https
(:mod:`tessera.connect.email.unsubscribe`). ``secret`` is the SMTP password, or a JSON object ``{"smtp_password": …,
"dkim_private_key": PEM}``.

Bounces that arrive later as DSNs (RFC 3464) at the bounce mailbox: :mod:`tessera.connect.email.dsn`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import random
import re
import uuid
from collections import defaultdict
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update

from tessera.connect.email.compose import format_address, render_email
from tessera.connect.email.content import EMAIL_VARIABLES_KEY
from tessera.connect.email.dkim import DkimKey, RelaxedDkimSigner
from tessera.connect.email.sender import SendResult, SmtpConfig, SmtpLink, TlsMode
from tessera.connect.email.unsubscribe import base_url, make_token, unsubscribe_url
from tessera.connect.models import DispatchItem, Message, MessageEvent
from tessera.connect.repository import insert_rows, one_of
from tessera.core import context
from tessera.core.db.base import table_of, utcnow
from tessera.core.db.session import switch_tenant, unit_of_work

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tessera.connect.dispatcher import Dispatcher, Item

log = logging.getLogger(__name__)

__all__ = [
    "EMAIL_RECEIPT_LINK",
    "EMAIL_VARIABLES_KEY",
    "EmailChannelConfig",
    "EmailRunner",
    "EmailWriter",
    "SmtpOutcome",
    "block_address",
    "classify",
    "event_row",
]

# Carrier-id rows of email messages live under this fixed "link": a DSN names the Message-ID
# but not the channel, and the key's primary key (link, carrier id) then finds it directly.
EMAIL_RECEIPT_LINK = uuid.UUID("00000000-0000-7000-8000-00000000e4a1")
MAX_BACKOFF_SECONDS = 3600.0

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_BY_DETAIL = {
    "5.1.1": "email.mailbox_unknown",
    "5.1.2": "email.domain_unknown",
    "5.1.10": "email.null_mx",
    "5.2.1": "email.mailbox_disabled",
    "5.2.2": "email.mailbox_full",
    "5.2.3": "email.message_too_large",
}
_BY_SUBJECT = {
    "1": "email.bad_address",
    "2": "email.mailbox_unavailable",
    "3": "email.mail_system_error",
    "4": "email.routing_failed",
    "5": "email.protocol_error",
    "6": "email.content_rejected",
    "7": "email.policy_rejected",
}
_BY_CODE = {
    550: "email.mailbox_unavailable",
    551: "email.user_not_local",
    552: "email.storage_exceeded",
    553: "email.bad_address",
    554: "email.transaction_failed",
}
_BLOCKING_CODES = (550, 551, 553)


@dataclasses.dataclass(frozen=True, slots=True)
class SmtpOutcome:
    """What an SMTP reply means for the message: ``kind`` delivered / failed / retry."""

    kind: str
    reason: str | None
    block: bool
    code: int
    reply: str


def classify(code: int, reply: str) -> SmtpOutcome:
    """Map an SMTP reply to a stable reason (``email.<rule>``) and whether to block the address.

    Enhanced status codes (RFC 3463) decide when present, the basic code otherwise. Only
    address and mailbox failures (x.1.x, x.2.x except size and full mailbox, bare 550/551/553)
    block: a policy or content refusal says nothing about the address.
    """
    reply = " ".join(reply.split())[:500]
    if 200 <= code < 300:
        return SmtpOutcome("delivered", None, False, code, reply)
    match = _ENHANCED.match(reply)
    detail = ".".join(match.groups()) if match else ""
    if 500 <= code < 600:
        if detail:
            subject = detail.split(".")[1]
            reason = _BY_DETAIL.get(detail) or _BY_SUBJECT.get(subject, f"email.smtp_{code}")
            block = subject == "1" or (subject == "2" and detail not in ("5.2.2", "5.2.3"))
        else:
            reason = _BY_CODE.get(code, f"email.smtp_{code}")
            block = code in _BLOCKING_CODES
        return SmtpOutcome("failed", reason, block, code, reply)
    reason = "email.connection_failed" if code == 421 and "connection failed" in reply else "email.deferred"
    return SmtpOutcome("retry", reason, False, code, reply)


@dataclasses.dataclass(frozen=True, slots=True)
class EmailChannelConfig:
    host: str
    sender: str  # formatted From header value
    envelope_from: str
    domain: str
    port: int = 25
    tls: TlsMode = TlsMode.NONE
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    pool_size: int = 4
    concurrency: int = 16
    timeout: float = 30.0
    reply_to: str | None = None
    dkim: DkimKey | None = dataclasses.field(default=None, repr=False)
    unsubscribe_mailto: str | None = None
    unsubscribe_url: str | None = None
    retry_base_seconds: float = 60.0
    max_attempts: int = 6

    @classmethod
    def from_channel(cls, settings: dict[str, Any], secret: str | None) -> EmailChannelConfig:
        """Parse a channel's settings and secret; ``ValueError`` names what is wrong."""
        host = str(settings.get("host") or "").strip()
        if not host:
            raise ValueError("settings.host is required")
        sender = str(settings.get("from") or "").strip()
        _, from_addr = parseaddr(sender)
        if "@" not in from_addr:
            raise ValueError("settings.from must be an email address")
        password: str | None = None
        dkim_pem: str | None = None
        if secret:
            if secret.lstrip().startswith("{"):
                data = json.loads(secret)
                password = data.get("smtp_password") or None
                dkim_pem = data.get("dkim_private_key") or None
            else:
                password = secret
        domain = str(settings.get("dkim_domain") or from_addr.rsplit("@", 1)[1]).lower()
        dkim: DkimKey | None = None
        if dkim_pem:
            selector = str(settings.get("dkim_selector") or "")
            if not selector:
                raise ValueError("settings.dkim_selector is required with a DKIM key")
            dkim = DkimKey(selector, domain, dkim_pem.encode("ascii"))
        pool = int(settings.get("pool_size") or 4)
        unsubscribe_url = settings.get("unsubscribe_url") or None
        if unsubscribe_url and not str(unsubscribe_url).startswith("https://"):
            raise ValueError("settings.unsubscribe_url must be https")
        return cls(
            host=host,
            sender=format_address(sender),
            envelope_from=str(settings.get("bounce_address") or from_addr),
            domain=domain,
            port=int(settings.get("port") or 25),
            tls=TlsMode(str(settings.get("tls") or "none")),
            username=settings.get("username") or None,
            password=password,
            pool_size=max(1, min(pool, 64)),
            concurrency=max(1, min(int(settings.get("concurrency") or 4 * pool), 512)),
            timeout=float(settings.get("timeout") or 30.0),
            reply_to=settings.get("reply_to") or None,
            dkim=dkim,
            unsubscribe_mailto=settings.get("unsubscribe_mailto") or None,
            unsubscribe_url=str(unsubscribe_url) if unsubscribe_url else None,
            retry_base_seconds=float(settings.get("retry_base_seconds", 60.0)),
            max_attempts=max(1, int(settings.get("max_attempts") or 6)),
        )


@dataclasses.dataclass(slots=True)
class _Info:
    id: uuid.UUID
    window: int


@dataclasses.dataclass(slots=True)
class _Result:
    item: Item
    channel_id: uuid.UUID
    outcome: SmtpOutcome
    message_id_header: str
    max_attempts: int
    retry_base: float
    future: asyncio.Future[None]


class EmailRunner:
    """Sends the email messages of one channel: ``concurrency`` workers over ``pool_size`` SMTP
    connections (one transaction per connection at a time), verification messages first.

    An edited channel is followed without a restart: the dispatcher reloads the channels of a
    tenant every few seconds (``routes[tenant].email``), and the next message a worker takes
    checks them; changed settings or secret (host, port, TLS, credentials, DKIM key, From, …)
    give a new SMTP pool for the sends that follow, and the old pool is closed once the sends
    on its connections are done."""

    def __init__(
        self, dispatcher: Dispatcher, channel_id: uuid.UUID, settings: dict[str, Any], secret: str | None
    ):
        self.d = dispatcher
        self.channel_id = channel_id
        self.params: tuple[dict[str, Any], str | None] = (dict(settings), secret)
        self._seen: object = None
        self.error: str | None = None
        self.config: EmailChannelConfig | None = None
        self.link: SmtpLink | None = None
        self.signer: RelaxedDkimSigner | None = None
        self.info = _Info(channel_id, 4)
        self._configure(settings, secret)
        self._retiring: set[asyncio.Task[None]] = set()
        self.unsubscribe_base = base_url()  # the one-click link /u/<signed token>, when https
        self.queue: asyncio.PriorityQueue[tuple[int, int, Item]] = asyncio.PriorityQueue()
        self._seq = 0
        self.writer = EmailWriter(dispatcher)
        self.writer.start()
        self.workers: list[asyncio.Task[None]] = []
        self._spawn_workers()
        self.bound = True

    def _configure(self, settings: dict[str, Any], secret: str | None) -> None:
        try:
            cfg: EmailChannelConfig | None = EmailChannelConfig.from_channel(settings, secret)
            self.error = None
        except (ValueError, TypeError) as exc:
            log.error("email channel %s is misconfigured: %s", self.channel_id, exc)
            cfg, self.error = None, str(exc)
        self.config = cfg
        self.info.window = cfg.concurrency if cfg else 4
        self.link = (
            SmtpLink(
                SmtpConfig(
                    cfg.host,
                    cfg.port,
                    tls=cfg.tls,
                    username=cfg.username,
                    password=cfg.password,
                    pool_size=cfg.pool_size,
                    timeout=cfg.timeout,
                    local_hostname=cfg.domain,
                )
            )
            if cfg
            else None
        )
        self.signer = RelaxedDkimSigner(cfg.dkim) if cfg and cfg.dkim else None

    def _spawn_workers(self) -> None:
        self.workers = [w for w in self.workers if not w.done()]
        for i in range(len(self.workers), self.info.window):
            self.workers.append(asyncio.create_task(self._work(i), name=f"email-{self.channel_id}-{i}"))

    def follow_channel(self, tenant_id: uuid.UUID) -> None:
        """Use the channel's current settings and secret if they changed since the last look."""
        routes = self.d.routes.get(tenant_id)
        params = routes.email.get(self.channel_id) if routes is not None else None
        if params is None or params is self._seen:  # the same reload as last time: nothing to do
            return
        self._seen = params
        if params == self.params:
            return
        log.info("email channel %s changed: new SMTP connections for the next sends", self.channel_id)
        old = self.link
        self.params = (dict(params[0]), params[1])
        self._configure(*self.params)
        if old is not None:
            task = asyncio.create_task(old.close_when_idle(), name=f"email-{self.channel_id}-retire")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self._spawn_workers()

    def pending(self) -> int:
        return self.queue.qsize()

    async def put(self, item: Item) -> None:
        self._seq += 1
        self.queue.put_nowait((item.lane, self._seq, item))

    def render(self, item: Item) -> tuple[bytes, str]:
        """The signed wire form of ``item`` and its Message-ID."""
        raw, message_id = self.render_unsigned(item)
        return (self.signer.sign(raw) if self.signer else raw), message_id

    def render_unsigned(self, item: Item) -> tuple[bytes, str]:
        cfg = self.config
        assert cfg is not None
        extra = item.variables.get(EMAIL_VARIABLES_KEY) or {}
        message_id = f"<{item.message_id.hex}@{cfg.domain}>"
        url: str | None = None
        if cfg.unsubscribe_url:
            url = cfg.unsubscribe_url.replace("{message_id}", item.message_id.hex)
            if "{token}" in url:
                url = url.replace("{token}", make_token(item.tenant_id, item.message_id))
        elif self.unsubscribe_base:
            url = unsubscribe_url(self.unsubscribe_base, item.tenant_id, item.message_id)
        raw = render_email(
            sender=cfg.sender,
            to=item.to,
            subject=str(extra.get("subject") or ""),
            text=item.body,
            html=extra.get("html"),
            message_id=message_id,
            reply_to=cfg.reply_to,
            unsubscribe_mailto=cfg.unsubscribe_mailto,
            unsubscribe_url=url,
        )
        return raw, message_id

    async def _work(self, index: int) -> None:
        while index < self.info.window:  # a channel edited to fewer workers ends the extra ones
            _, _, item = await self.queue.get()
            self.d.in_flight.add(item.message_id)
            self.follow_channel(item.tenant_id)
            cfg = self.config  # this message's configuration, whatever an edit does meanwhile
            message_id = ""
            try:
                outcome, message_id = await self._send(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad address or a bug must not kill the worker
                log.exception("email send failed")
                outcome = SmtpOutcome("failed", "email.invalid_message", False, 0, str(exc)[:200])
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self.writer.put(
                _Result(
                    item,
                    self.channel_id,
                    outcome,
                    message_id,
                    cfg.max_attempts if cfg else 1,
                    cfg.retry_base_seconds if cfg else 60.0,
                    fut,
                )
            )
            with contextlib.suppress(Exception):
                await fut
            self.d.in_flight.discard(item.message_id)

    async def _send(self, item: Item) -> tuple[SmtpOutcome, str]:
        cfg, link = self.config, self.link
        if cfg is None or link is None:
            return SmtpOutcome("failed", "email.channel_misconfigured", False, 0, self.error or ""), ""
        signer = self.signer
        try:
            raw, message_id = self.render_unsigned(item)
            if signer is not None and signer.releases_gil:
                # the RSA step (~0.3 ms) runs without the GIL: on the signing thread it overlaps
                # the event loop's own work (SMTP, status writes, claims) on another core
                raw = await asyncio.get_running_loop().run_in_executor(_signing_thread(), signer.sign, raw)
            elif signer is not None:
                raw = signer.sign(raw)
        except ValueError as exc:
            return SmtpOutcome("failed", "email.invalid_message", False, 0, str(exc)[:200]), ""
        result: SendResult = await link.send(raw, sender=cfg.envelope_from, recipients=[item.to])
        return classify(result.smtp_code if not result.accepted else 250, result.smtp_message), message_id

    async def stop(self) -> list[Item]:
        for w in self.workers:
            w.cancel()
        for w in self.workers:
            with contextlib.suppress(asyncio.CancelledError):
                await w
        await self.writer.stop()
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.link is not None:
            await self.link.close()
        left: list[Item] = []
        while not self.queue.empty():
            left.append(self.queue.get_nowait()[2])
        self.bound = False
        return left


_SIGNING: concurrent.futures.ThreadPoolExecutor | None = None


def _signing_thread() -> concurrent.futures.ThreadPoolExecutor:
    """One thread for the DKIM signatures of every channel of this process (created on first use)."""
    global _SIGNING
    if _SIGNING is None:
        _SIGNING = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dkim-sign")
    return _SIGNING


def _backoff(base: float, attempt: int) -> float:
    delay = min(base * 2 ** max(attempt - 1, 0), MAX_BACKOFF_SECONDS)
    return delay * random.uniform(0.9, 1.1)


class EmailWriter:
    """Writes email outcomes in batches: one transaction for whatever arrived meanwhile."""

    LINGER_SECONDS = 0.01
    LINGER_UNTIL = 100

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.queue: asyncio.Queue[_Result] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="email-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def put(self, result: _Result) -> None:
        await self.queue.put(result)

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.queue.qsize() < self.LINGER_UNTIL:
                # results arrive one SMTP reply at a time: waiting a few milliseconds turns many
                # one-row transactions (each with its statements and listener check) into one
                await asyncio.sleep(self.LINGER_SECONDS)
            while not self.queue.empty() and len(batch) < 2000:
                batch.append(self.queue.get_nowait())
            failure: Exception | None = None
            for attempt in range(6):  # the outcome is known: losing it would send the message again
                try:
                    await self.flush(batch)
                    failure = None
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("email writer batch failed (attempt %d)", attempt + 1)
                    failure = exc
                    await asyncio.sleep(0.2 * 2**attempt)
            for r in batch:
                if r.future.done():
                    continue
                if failure is None:
                    r.future.set_result(None)
                else:  # left claimed: recovered and sent again once this gateway is gone
                    r.future.set_exception(failure)

    async def flush(self, batch: list[_Result]) -> None:
        now = utcnow()
        by_tenant: dict[uuid.UUID, list[_Result]] = defaultdict(list)
        for r in batch:
            by_tenant[r.item.tenant_id].append(r)
        stats = self.d.stats
        stats["email_writes"] += 1  # transactions: delivered / email_writes is the batch size
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                retry_rows: list[dict[str, Any]] = []
                for tid, results in by_tenant.items():
                    await switch_tenant(s, tid)
                    retries = [r for r in results if r.outcome.kind == "retry"]
                    attempts: dict[uuid.UUID, int] = {}
                    if retries:
                        rows = await s.execute(
                            select(Message.id, Message.attempts).where(
                                one_of(s, Message.id, [r.item.message_id for r in retries])
                            )
                        )
                        attempts = {mid: n for mid, n in rows.all()}
                    upd: list[dict[str, Any]] = []
                    keys: list[dict[str, Any]] = []
                    events: list[dict[str, Any]] = []
                    finals: list[tuple[uuid.UUID, str, str | None]] = []
                    blocks: list[tuple[str, SmtpOutcome]] = []
                    done: list[uuid.UUID] = []
                    for r in results:
                        it, oc = r.item, r.outcome
                        detail = (
                            {"smtp_code": oc.code, "smtp_reply": oc.reply} if oc.code else {"error": oc.reply}
                        )
                        route = {"link_id": str(r.channel_id), "tried": [str(r.channel_id)]}
                        if oc.kind == "retry":
                            attempt = attempts.get(it.message_id, 1)
                            if attempt < r.max_attempts:
                                delay = _backoff(r.retry_base, attempt)
                                retry_rows.append({"b_mid": it.message_id, "b_at": now + _seconds(delay)})
                                events.append(
                                    event_row(
                                        tid,
                                        it.message_id,
                                        "retry",
                                        "queued",
                                        {
                                            **detail,
                                            "reason": oc.reason,
                                            "attempt": attempt,
                                            "retry_in_s": round(delay, 3),
                                        },
                                        now,
                                    )
                                )
                                stats["email_retried"] += 1
                                continue
                        if oc.kind == "delivered":
                            upd.append(
                                _row(
                                    it.message_id,
                                    "delivered",
                                    None,
                                    [r.message_id_header],
                                    route,
                                    r.channel_id,
                                    now,
                                    now,
                                )
                            )
                            keys.append(
                                {
                                    "link_id": EMAIL_RECEIPT_LINK,
                                    "carrier_id": it.message_id.hex,
                                    "tenant_id": tid,
                                    "message_id": it.message_id,
                                    "part": 0,
                                    "parts": 1,
                                    "outcome": "DELIVRD",
                                }
                            )
                            events.append(
                                event_row(
                                    tid,
                                    it.message_id,
                                    "status",
                                    "submitted",
                                    {"link_id": str(r.channel_id), "carrier_ids": [r.message_id_header]},
                                    now,
                                )
                            )
                            events.append(event_row(tid, it.message_id, "receipt", "delivered", detail, now))
                            finals.append((it.message_id, "delivered", None))
                            stats["submitted"] += 1
                            stats["delivered"] += 1
                        else:
                            upd.append(
                                _row(it.message_id, "failed", oc.reason, [], route, r.channel_id, None, now)
                            )
                            events.append(
                                event_row(
                                    tid,
                                    it.message_id,
                                    "status",
                                    "failed",
                                    {**detail, "reason": oc.reason},
                                    now,
                                )
                            )
                            finals.append((it.message_id, "failed", oc.reason))
                            stats["failed"] += 1
                            if oc.block:
                                blocks.append((it.to, oc))
                        done.append(it.message_id)
                    if upd:
                        # the dispatcher's writer of submit results: on PostgreSQL one statement
                        # (messages updated, carrier ids and events inserted, dispatch rows deleted)
                        from tessera.connect.dispatcher import record_submits

                        await record_submits(s, upd, keys, events, done)
                    else:  # retries only: their events
                        await insert_rows(s, table_of(MessageEvent), events)
                    for address, oc in blocks:
                        await block_address(s, address, oc)
                    await self.d._publish(s, finals)
                await switch_tenant(s, None)
                if retry_rows:
                    d = table_of(DispatchItem)
                    await s.execute(
                        update(d)
                        .where(d.c.message_id == bindparam("b_mid", type_=d.c.message_id.type))
                        .values(
                            state=0,
                            claimed_by=None,
                            available_at=bindparam("b_at", type_=d.c.available_at.type),
                            claims=d.c.claims - 1,  # a refused attempt is not a resubmission
                        ),
                        retry_rows,
                    )


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def event_row(
    tid: uuid.UUID, mid: uuid.UUID, kind: str, status: str, detail: dict[str, Any], at: Any
) -> dict[str, Any]:
    return {"tenant_id": tid, "message_id": mid, "kind": kind, "status": status, "detail": detail, "at": at}


def _row(
    mid: uuid.UUID,
    status: str,
    reason: str | None,
    cids: list[str],
    route: dict[str, Any],
    link: uuid.UUID,
    submitted: Any,
    now: Any,
) -> dict[str, Any]:
    return {
        "b_id": mid,
        "b_status": status,
        "b_reason": reason,
        "b_cids": cids,
        "b_route": route,
        "b_link": link,
        "b_sub": submitted,
        "b_done": now,
        "b_upd": now,
    }


async def block_address(s: AsyncSession, address: str, outcome: SmtpOutcome) -> None:
    """Put ``address`` on the tenant-in-scope's block list (once) after a hard bounce."""
    from tessera.connect.compliance import service as compliance
    from tessera.connect.compliance.errors import DuplicateEntry

    with contextlib.suppress(DuplicateEntry):
        await compliance.add_entry(
            s, list_kind="block", value=address, note=f"hard bounce {outcome.code} {outcome.reason}"[:200]
        )
