"""Compliance console pages (``compliance:manage``): word lists and the test box, the review
queue of held messages, block / allow / empty-number lists, opt-outs, quiet hours and caps.

Changes go through ``connect.compliance.service`` inside a savepoint, so a refused change
(a field error shown on the form) leaves nothing half-written in the request's transaction.
Numbers and addresses never travel in URLs: searches and additions are POSTed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance import service as compliance
from tessera.connect.compliance.models import ListEntry, OptOut, Review
from tessera.connect.compliance.schemas import EntryIn, OptOutIn, SettingsIn, WordIn
from tessera.connect.service import console_compliance as reads
from tessera.console import i18n
from tessera.console.components import (
    Form,
    FormField,
    Tab,
    _l,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, Tile, register_nav, register_tile
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page, parse_uuid
from tessera.core.access.masking import mask_email, mask_phone
from tessera.core.access.principal import Principal
from tessera.core.http.errors import NotFound, TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/compliance")
Manager = Annotated[Page, Depends(page("compliance:manage"))]
BASE = f"{PREFIX}/connect/compliance"

register_nav(
    NavItem("connect.compliance", "Compliance", BASE, "compliance:manage", module="connect", order=240)
)

ACTION_LABELS = {"block": _l("Block"), "hold": _l("Hold for review"), "replace": _l("Replace")}
LIST_LABELS = {"block": _l("Block list"), "allow": _l("Allow list"), "empty": _l("Empty numbers")}
CHANNEL_LABELS = {"sms": _l("SMS"), "wechat": _l("WeChat"), "email": _l("Email"), "voice": _l("Voice")}
STATUS_LABELS = {"pending": _l("Pending"), "approved": _l("Approved"), "rejected": _l("Rejected")}
VERDICT_LABELS = {"allow": _l("Allowed"), "hold": _l("Held for review"), "block": _l("Blocked")}

# Service rules shown in the user's language (the service's own message is English).
RULE_MESSAGES = {
    "empty_after_normalisation": _l("Nothing is left of this after normalisation."),
    "replace_only": _l("A replacement needs the action “Replace”."),
    "invalid_phone": _l("Enter a phone number (E.164 or a mainland number) or an email address."),
    "invalid_email": _l("Enter a valid email address."),
    "both_or_neither": _l("Quiet hours need both a start and an end."),
    "compliance.duplicate_word": _l("This word is already on the list."),
    "compliance.duplicate_entry": _l("This address is already on the list."),
    "compliance.review_decided": _l("This review has already been decided."),
}


def localise(exc: TesseraError) -> TesseraError:
    """The same error with its message in the user's language when its rule is known."""
    rule = str(exc.details.get("rule") or exc.code)
    msg = RULE_MESSAGES.get(rule) or RULE_MESSAGES.get(exc.code)
    if msg is not None:
        exc.message = str(msg)
    return exc


def show_address(pg: Page, value: str) -> str:
    if pg.principal is not None and pg.principal.can_see_pii:
        return value
    return mask_email(value) if "@" in value else mask_phone(value)


def tabs() -> list[Tab]:
    return [
        Tab("words", _("Words"), BASE),
        Tab("test", _("Test box"), f"{BASE}/test"),
        Tab("reviews", _("Review queue"), f"{BASE}/reviews"),
        Tab("lists", _("Number lists"), f"{BASE}/lists"),
        Tab("opt-outs", _("Opt-outs"), f"{BASE}/opt-outs"),
        Tab("settings", _("Quiet hours & caps"), f"{BASE}/settings"),
    ]


@register_tile
async def held_messages_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("compliance:manage"):
        return None
    n = await reads.pending_reviews(session)
    return Tile(
        _("Held messages"),
        i18n.format_number(n),
        f"{BASE}/reviews",
        order=60,
        hint=_("Waiting for a compliance review"),
    )


# --- words -------------------------------------------------------------------------------------

WORD_FIELDS = ["word", "category", "action", "replacement", "whole_word"]


def word_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        WordIn,
        values or {"category": "general", "action": "block"},
        labels={
            "word": _("Word"),
            "category": _("Category"),
            "action": _("Action"),
            "replacement": _("Replacement"),
            "whole_word": _("Whole word only (Latin letters and digits)"),
        },
        options={"action": [(k, str(v)) for k, v in ACTION_LABELS.items()]},
        only=WORD_FIELDS,
        help={
            "replacement": _("Only for “Replace”; empty masks the word with *."),
            "word": _(
                "Matched after normalisation: case, full-width letters, separators and traditional characters."
            ),
        },
    )


async def words_page(pg: Page, form: Form | None = None, status: int = 200) -> Response:
    category = pg.request.query_params.get("category") or None
    all_words = await compliance.list_words(pg.session)
    all_global = await compliance.list_global_words(pg.session)
    categories = sorted({w.category for w in all_words} | {w.category for w in all_global})
    words = [w for w in all_words if not category or w.category == category]
    global_words = [w for w in all_global if not category or w.category == category]
    return pg.render(
        "connect/compliance_words.html",
        status_code=status,
        tabs=tabs(),
        words=words,
        global_words=global_words,
        categories=categories,
        category=category or "",
        form=form or word_form(),
        action_labels=ACTION_LABELS,
    )


@router.get("")
async def words(pg: Manager) -> Response:
    return await words_page(pg)


@router.post("/words")
async def word_add(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, WordIn, only=WORD_FIELDS)
    if data.get("action") != "replace":
        data.pop("replacement", None)
    form = word_form()
    body = validate_form(WordIn, data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                row = await compliance.add_word(pg.session, **body.model_dump())
            return pg.redirect(BASE, toast=_("“%(word)s” added.") % {"word": row.word})
        except TesseraError as exc:
            apply_error(form, localise(exc))
    return await words_page(pg, refill(form, data), status=422)


@router.post("/words/{word_id}/delete")
async def word_delete(word_id: str, pg: Manager) -> Response:
    wid = parse_uuid(word_id)
    if wid is None:
        raise NotFound()
    await compliance.delete_word(pg.session, wid)
    return pg.redirect(BASE, toast=_("Word removed."))


# --- test box ----------------------------------------------------------------------------------


@router.get("/test")
async def test_box(pg: Manager) -> Response:
    return pg.render("connect/compliance_test.html", tabs=tabs(), result=None, text="", error=None)


@router.post("/test")
async def test_run(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    text = str(raw.get("text") or "")
    error = None
    result = None
    if not text.strip():
        error = _("Enter some text to test.")
    elif len(text) > 5000:
        error = _("The text is longer than 5,000 characters.")
    else:
        result = await reads.check_text(pg.session, text)
    # htmx does not swap 4xx answers, so the partial carries its error with a 200.
    status = 422 if error and not pg.partial else 200
    tpl = "connect/compliance_test_result.html" if pg.partial else "connect/compliance_test.html"
    return pg.render(
        tpl,
        status_code=status,
        tabs=tabs(),
        result=result,
        text=text,
        error=error,
        verdict_labels=VERDICT_LABELS,
        action_labels=ACTION_LABELS,
    )


# --- review queue ------------------------------------------------------------------------------


@router.get("/reviews")
async def reviews(pg: Manager) -> Response:
    status = pg.request.query_params.get("status", "pending")
    if status not in ("pending", "approved", "rejected", "all"):
        status = "pending"
    rows = await compliance.list_reviews(pg.session, None if status == "all" else status, limit=200)
    return pg.render(
        "connect/compliance_reviews.html",
        tabs=tabs(),
        rows=rows,
        status=status,
        status_labels=STATUS_LABELS,
        to=lambda r: show_address(pg, r.to),
    )


async def _review(pg: Page, review_id: str) -> Review:
    rid = parse_uuid(review_id)
    if rid is None:
        raise NotFound()
    return await compliance.get_review(pg.session, rid)


def _review_page(pg: Page, row: Review, error: str | None = None, status: int = 200) -> Response:
    return pg.render(
        "connect/compliance_review.html",
        status_code=status,
        tabs=tabs(),
        r=row,
        to=show_address(pg, row.to),
        error=error,
        status_labels=STATUS_LABELS,
        action_labels=ACTION_LABELS,
        channel_labels=CHANNEL_LABELS,
    )


@router.get("/reviews/{review_id}")
async def review_detail(review_id: str, pg: Manager) -> Response:
    return _review_page(pg, await _review(pg, review_id))


@router.post("/reviews/{review_id}/approve")
async def review_approve(review_id: str, pg: Manager, request: Request) -> Response:
    row = await _review(pg, review_id)
    note = str((await request.form()).get("note") or "").strip()[:500] or None
    try:
        async with pg.session.begin_nested():
            await compliance.decide_review(pg.session, row.id, "approved", note)
    except TesseraError as exc:
        return _review_page(pg, await _review(pg, review_id), str(localise(exc).message), exc.status)
    return pg.redirect(f"{BASE}/reviews", toast=_("Approved: the message was released for sending."))


@router.post("/reviews/{review_id}/reject")
async def review_reject(review_id: str, pg: Manager, request: Request) -> Response:
    row = await _review(pg, review_id)
    note = str((await request.form()).get("note") or "").strip()
    if not note:
        return _review_page(pg, row, _("Give a reason for the rejection."), 422)
    if len(note) > 500:
        return _review_page(pg, row, _("The reason is longer than 500 characters."), 422)
    try:
        async with pg.session.begin_nested():
            await compliance.decide_review(pg.session, row.id, "rejected", note)
    except TesseraError as exc:
        return _review_page(pg, await _review(pg, review_id), str(localise(exc).message), exc.status)
    return pg.redirect(f"{BASE}/reviews", toast=_("Rejected."))


# --- block / allow / empty lists ---------------------------------------------------------------


def entry_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        EntryIn,
        values,
        labels={"value": _("Phone number or email"), "note": _("Note")},
        only=["value", "note"],
    )


async def lists_page(pg: Page, kind: str, form: Form | None = None, status: int = 200) -> Response:
    entries: list[ListEntry] = await compliance.list_entries(pg.session, kind)
    return pg.render(
        "connect/compliance_lists.html",
        status_code=status,
        tabs=tabs(),
        kind=kind,
        entries=entries,
        list_labels=LIST_LABELS,
        form=form or entry_form(),
        show=lambda v: show_address(pg, v),
    )


def _kind(value: str | None) -> str:
    return value if value in LIST_LABELS else "block"


@router.get("/lists")
async def lists(pg: Manager) -> Response:
    return await lists_page(pg, _kind(pg.request.query_params.get("list")))


@router.post("/lists/{kind}")
async def list_add(kind: str, pg: Manager, request: Request) -> Response:
    if kind not in LIST_LABELS:
        raise NotFound()
    raw = await request.form()
    data = form_data(raw, EntryIn, only=["value", "note"])
    form = entry_form()
    body = validate_form(EntryIn, data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                await compliance.add_entry(pg.session, list_kind=kind, value=body.value, note=body.note)  # type: ignore[attr-defined]
            return pg.redirect(f"{BASE}/lists?list={kind}", toast=_("Added to the list."))
        except TesseraError as exc:
            apply_error(form, localise(exc))
    return await lists_page(pg, kind, refill(form, data), status=422)


@router.post("/lists/entries/{entry_id}/delete")
async def list_delete(entry_id: str, pg: Manager, request: Request) -> Response:
    eid = parse_uuid(entry_id)
    if eid is None:
        raise NotFound()
    await compliance.delete_entry(pg.session, eid)
    kind = _kind(str((await request.form()).get("list") or ""))
    return pg.redirect(f"{BASE}/lists?list={kind}", toast=_("Removed from the list."))


# --- opt-outs ----------------------------------------------------------------------------------


def opt_out_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        OptOutIn,
        values or {"channel": "sms"},
        labels={"channel": _("Channel"), "address": _("Phone number or email")},
        options={"channel": [(k, str(v)) for k, v in CHANNEL_LABELS.items()]},
    )


def search_form(value: str = "", error: str | None = None) -> Form:
    f = FormField(
        "address", _("Phone number or email"), "search", value, required=True, error=error, maxlength=320
    )
    return Form([f], {"address": error} if error else {})


async def opt_outs_page(
    pg: Page,
    *,
    form: Form | None = None,
    search: Form | None = None,
    found: list[OptOut] | None = None,
    status: int = 200,
) -> Response:
    rows = await compliance.list_opt_outs(pg.session, None, limit=100)
    return pg.render(
        "connect/compliance_optouts.html",
        status_code=status,
        tabs=tabs(),
        rows=rows,
        found=found,
        form=form or opt_out_form(),
        search=search or search_form(),
        channel_labels=CHANNEL_LABELS,
        show=lambda v: show_address(pg, v),
    )


@router.get("/opt-outs")
async def opt_outs(pg: Manager) -> Response:
    return await opt_outs_page(pg)


@router.post("/opt-outs/search")
async def opt_out_search(pg: Manager, request: Request) -> Response:
    address = str((await request.form()).get("address") or "").strip()
    if not address:
        return await opt_outs_page(pg, search=search_form("", _("This field is required.")), status=422)
    try:
        found = await reads.find_opt_outs(pg.session, address)
    except TesseraError as exc:
        return await opt_outs_page(pg, search=search_form(address, str(localise(exc).message)), status=422)
    return await opt_outs_page(pg, search=search_form(address), found=found)


@router.post("/opt-outs")
async def opt_out_add(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, OptOutIn)
    form = opt_out_form()
    body = validate_form(OptOutIn, data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                await compliance.opt_out(
                    pg.session,
                    channel=body.channel,  # type: ignore[attr-defined]
                    address=body.address,  # type: ignore[attr-defined]
                    source="console",
                )
            return pg.redirect(f"{BASE}/opt-outs", toast=_("Opt-out recorded."))
        except TesseraError as exc:
            apply_error(form, localise(exc))
    return await opt_outs_page(pg, form=refill(form, data), status=422)


@router.post("/opt-outs/{opt_out_id}/delete")
async def opt_out_remove(opt_out_id: str, pg: Manager) -> Response:
    oid = parse_uuid(opt_out_id)
    if oid is None:
        raise NotFound()
    await compliance.remove_opt_out(pg.session, oid)
    return pg.redirect(f"{BASE}/opt-outs", toast=_("Opt-out removed: messages may be sent again."))


# --- quiet hours and frequency caps ------------------------------------------------------------

SETTING_FIELDS = ["quiet_start", "quiet_end", "cap_count", "cap_window_hours"]


def _hhmm(m: int | None) -> str:
    return "" if m is None else f"{m // 60:02d}:{m % 60:02d}"


def settings_form(values: dict[str, Any]) -> Form:
    return schema_form(
        SettingsIn,
        values,
        labels={
            "quiet_start": _("Quiet hours start"),
            "quiet_end": _("Quiet hours end"),
            "cap_count": _("Marketing messages per recipient"),
            "cap_window_hours": _("Per how many hours"),
        },
        only=SETTING_FIELDS,
        kinds={"quiet_start": "time", "quiet_end": "time"},
        help={
            "quiet_start": _(
                "Marketing messages wait for the end of quiet hours. Empty both to switch them off."
            ),
            "cap_count": _("Empty: no frequency cap. The allow list is exempt."),
        },
    )


async def settings_page(pg: Page, form: Form | None = None, status: int = 200) -> Response:
    st = await compliance.get_settings(pg.session)
    values = {
        "quiet_start": _hhmm(st.quiet_start),
        "quiet_end": _hhmm(st.quiet_end),
        "cap_count": st.cap_count if st.cap_count is not None else "",
        "cap_window_hours": st.cap_window_hours or 24,
    }
    tz = pg.tenant.timezone if pg.tenant else "UTC"
    return pg.render(
        "connect/compliance_settings.html",
        status_code=status,
        tabs=tabs(),
        form=form or settings_form(values),
        timezone=tz,
    )


@router.get("/settings")
async def settings(pg: Manager) -> Response:
    return await settings_page(pg)


@router.post("/settings")
async def settings_save(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    data = {k: str(raw.get(k) or "").strip() or None for k in SETTING_FIELDS}
    form = settings_form({k: v or "" for k, v in data.items()})
    body = validate_form(SettingsIn, data, form)
    if body is not None:
        changes: dict[str, Any] = body.model_dump(include=set(SETTING_FIELDS))
        for key in ("quiet_start", "quiet_end"):
            if changes[key] is not None:
                h, m = changes[key].split(":")
                changes[key] = int(h) * 60 + int(m)
        try:
            async with pg.session.begin_nested():
                await compliance.update_settings(pg.session, changes)
            return pg.redirect(f"{BASE}/settings", toast=_("Settings saved."))
        except TesseraError as exc:
            if exc.field == "quiet_hours":
                exc.field = "quiet_end" if changes["quiet_end"] is None else "quiet_start"
            apply_error(form, localise(exc))
    return await settings_page(pg, refill(form, {k: v or "" for k, v in data.items()}), status=422)
