"""Inbound console pages: received (MO) messages (``messages:read``), auto-reply rules
(``channels:manage``, like the API) and the opt-out keywords and reply (``compliance:manage``,
they are compliance settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import select

from tessera.connect.compliance import service as compliance
from tessera.connect.compliance.matcher import DEFAULT_OPT_OUT_KEYWORDS
from tessera.connect.compliance.schemas import SettingsIn
from tessera.connect.inbound import service as inbound
from tessera.connect.inbound.models import AutoReplyRule, InboundMessage
from tessera.connect.inbound.schemas import RuleIn
from tessera.connect.service import console_compliance as reads
from tessera.connect.views.compliance import CHANNEL_LABELS, localise, show_address
from tessera.console.components import (
    Column,
    Form,
    FormField,
    ListPage,
    Tab,
    _l,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page, parse_uuid
from tessera.core.http.errors import NotFound, TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/inbound")
Reader = Annotated[Page, Depends(page("messages:read"))]
RuleManager = Annotated[Page, Depends(page("channels:manage"))]
KeywordManager = Annotated[Page, Depends(page("compliance:manage"))]
BASE = f"{PREFIX}/connect/inbound"

register_nav(NavItem("connect.inbound", "Inbound", BASE, "messages:read", module="connect", order=250))

MATCH_LABELS = {"exact": _l("Whole message"), "contains": _l("Contains")}
RULE_FIELDS = ["keyword", "match", "reply", "priority", "active"]
RULE_MESSAGES = {
    "inbound.duplicate_rule": _l("A rule with this keyword already exists."),
}


def tabs(pg: Page) -> list[Tab]:
    out = [Tab("messages", _("Messages"), BASE)]
    if pg.can("channels:manage"):
        out.append(Tab("rules", _("Auto-reply rules"), f"{BASE}/rules"))
    if pg.can("compliance:manage"):
        out.append(Tab("keywords", _("Opt-out keywords"), f"{BASE}/keywords"))
    return out


def _localise(exc: TesseraError) -> TesseraError:
    msg = RULE_MESSAGES.get(exc.code)
    if msg is not None:
        exc.message = str(msg)
        return exc
    return localise(exc)


def messages_list(pg: Page, keywords: dict[Any, str]) -> ListPage:
    def contact(m: InboundMessage) -> Markup | None:
        if m.contact_id is None:
            return None
        return Markup('<a href="{}">{}</a>').format(f"{PREFIX}/contacts/{m.contact_id}", _("Open contact"))

    def matched(m: InboundMessage) -> str | None:
        if m.opt_out:
            return _("Opt-out")
        if m.rule_id is not None:
            kw = keywords.get(m.rule_id) or _("deleted rule")
            return f"{kw} · {_('replied')}" if m.reply_message_id else kw
        return None

    return ListPage(
        key="connect.inbound",
        title=_("Inbound messages"),
        filterset=reads.INBOUND_FILTERS,
        columns=[
            Column("from_", _("From"), value=lambda m: show_address(pg, m.from_)),
            Column("body", _("Text")),
            Column("contact_id", _("Contact"), value=contact),
            Column("rule_id", _("Keyword matched"), value=matched),
            Column("received_at", _("Received at"), sortable=True, kind="datetime"),
        ],
        export=False,
        options={"channel": [(k, str(v)) for k, v in CHANNEL_LABELS.items()]},
        labels={"channel": _("Channel"), "received_at": _("Received at"), "body": _("Text")},
        search_param="body__contains",
        empty_text=_("No inbound messages yet."),
    )


@router.get("")
async def messages(pg: Reader) -> Response:
    lst = messages_list(pg, await reads.rule_keywords(pg.session))
    result = await lst.run(pg, select(InboundMessage))
    return lst.respond(pg, result, "connect/inbound_messages.html", tabs=tabs(pg))


# --- auto-reply rules --------------------------------------------------------------------------


def rule_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        RuleIn,
        values if values is not None else {"match": "exact", "priority": 100, "active": True},
        labels={
            "keyword": _("Keyword"),
            "match": _("Match"),
            "reply": _("Reply"),
            "priority": _("Priority"),
            "active": _("Active"),
        },
        options={"match": [(k, str(v)) for k, v in MATCH_LABELS.items()]},
        kinds={"reply": "textarea"},
        only=RULE_FIELDS,
        help={
            "keyword": _("Compared after normalisation (case, width, separators)."),
            "priority": _("Lower numbers are tried first."),
        },
    )


async def rules_page(pg: Page, form: Form | None = None, status: int = 200) -> Response:
    return pg.render(
        "connect/inbound_rules.html",
        status_code=status,
        tabs=tabs(pg),
        rules=await inbound.list_rules(pg.session),
        form=form or rule_form(),
        match_labels=MATCH_LABELS,
    )


@router.get("/rules")
async def rules(pg: RuleManager) -> Response:
    return await rules_page(pg)


@router.post("/rules")
async def rule_create(pg: RuleManager, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, RuleIn, only=RULE_FIELDS)
    form = rule_form()
    body = validate_form(RuleIn, data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                await inbound.create_rule(pg.session, body.model_dump())
            return pg.redirect(f"{BASE}/rules", toast=_("Rule created."))
        except TesseraError as exc:
            apply_error(form, _localise(exc))
    return await rules_page(pg, refill(form, data), status=422)


async def _rule(pg: Page, rule_id: str) -> AutoReplyRule:
    rid = parse_uuid(rule_id)
    if rid is None:
        raise NotFound()
    return await inbound.get_rule(pg.session, rid)


def _rule_page(pg: Page, rule: AutoReplyRule, form: Form, status: int = 200) -> Response:
    return pg.render("connect/inbound_rule.html", status_code=status, rule=rule, form=form)


@router.get("/rules/{rule_id}")
async def rule_detail(rule_id: str, pg: RuleManager) -> Response:
    rule = await _rule(pg, rule_id)
    return _rule_page(pg, rule, rule_form({k: getattr(rule, k) for k in RULE_FIELDS}))


@router.post("/rules/{rule_id}")
async def rule_update(rule_id: str, pg: RuleManager, request: Request) -> Response:
    rule = await _rule(pg, rule_id)
    raw = await request.form()
    data = form_data(raw, RuleIn, only=RULE_FIELDS)
    form = rule_form({})
    body = validate_form(RuleIn, data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                await inbound.update_rule(pg.session, rule.id, body.model_dump())
            return pg.redirect(f"{BASE}/rules", toast=_("Rule saved."))
        except TesseraError as exc:
            apply_error(form, _localise(exc))
    rule = await _rule(pg, rule_id)
    return _rule_page(pg, rule, refill(form, data), status=422)


@router.post("/rules/{rule_id}/delete")
async def rule_delete(rule_id: str, pg: RuleManager) -> Response:
    rule = await _rule(pg, rule_id)
    await inbound.delete_rule(pg.session, rule.id)
    return pg.redirect(f"{BASE}/rules", toast=_("Rule deleted."))


# --- opt-out keywords --------------------------------------------------------------------------


def keywords_form(keywords: str, reply: str) -> Form:
    return Form(
        [
            FormField(
                "opt_out_keywords",
                _("Opt-out keywords"),
                "textarea",
                keywords,
                help=_("One per line or separated by commas; empty restores the defaults: %(d)s")
                % {"d": ", ".join(DEFAULT_OPT_OUT_KEYWORDS)},
            ),
            FormField(
                "opt_out_reply",
                _("Confirmation reply"),
                "textarea",
                reply,
                maxlength=500,
                help=_("Empty: a standard reply in the sender's language."),
            ),
        ]
    )


@router.get("/keywords")
async def keywords(pg: KeywordManager) -> Response:
    st = await compliance.get_settings(pg.session)
    form = keywords_form("\n".join(st.opt_out_keywords or []), st.opt_out_reply or "")
    return pg.render("connect/inbound_keywords.html", tabs=tabs(pg), form=form)


@router.post("/keywords")
async def keywords_save(pg: KeywordManager, request: Request) -> Response:
    raw = await request.form()
    text = str(raw.get("opt_out_keywords") or "")
    reply = str(raw.get("opt_out_reply") or "").strip()
    words = [w.strip() for line in text.splitlines() for w in line.split(",") if w.strip()]
    form = keywords_form(text, reply)
    if len(words) > 50:
        form.errors["opt_out_keywords"] = _("At most 50 keywords.")
    elif any(len(w) > 64 for w in words):
        form.errors["opt_out_keywords"] = _("A keyword has at most 64 characters.")
    if len(reply) > 500:
        form.errors["opt_out_reply"] = _("This is too long.")
    if not form.errors:
        body = validate_form(
            SettingsIn, {"opt_out_keywords": words or None, "opt_out_reply": reply or None}, form
        )
        if body is not None:
            try:
                async with pg.session.begin_nested():
                    await compliance.update_settings(
                        pg.session, body.model_dump(include={"opt_out_keywords", "opt_out_reply"})
                    )
                return pg.redirect(f"{BASE}/keywords", toast=_("Opt-out keywords saved."))
            except TesseraError as exc:
                apply_error(form, _localise(exc))
    for f in form.fields:
        f.error = form.errors.get(f.name)
    return pg.render("connect/inbound_keywords.html", status_code=422, tabs=tabs(pg), form=form)
