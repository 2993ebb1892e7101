"""Channel accounts (SMS, WeChat) and their SMPP links: list, create, edit; each link's live bind
state, throughput and recent errors, refreshed by htmx polling, with a throughput chart.

Passwords and app secrets are write-only: forms never render them back, and an edit form left
empty keeps them. An edited link is rebound by the running gateway within seconds.
"""

from __future__ import annotations

import json
import uuid
import zoneinfo
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from tessera.connect.models import Channel, Link
from tessera.connect.schemas import ChannelIn, ChannelPatch, LinkIn, LinkPatch
from tessera.connect.service import channels as service
from tessera.connect.service import console_queries as q
from tessera.console import i18n
from tessera.console.components import (
    Action,
    Chart,
    Form,
    FormField,
    _l,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.core.db.base import utcnow
from tessera.core.http.errors import TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/channels")
BASE = f"{PREFIX}/connect/channels"
Manager = Annotated[Page, Depends(page("channels:manage"))]

register_nav(NavItem("connect.channels", "Channels", BASE, "channels:manage", module="connect", order=42))

KIND_LABELS = {"sms": _l("SMS"), "wechat": _l("WeChat"), "email": _l("Email")}
EMAIL_FIELDS = {
    "smtp_host": "host",
    "smtp_port": "port",
    "tls": "tls",
    "smtp_username": "username",
    "from_address": "from",
}
EDIT_EMAIL_FIELDS = {**EMAIL_FIELDS, "dkim_selector": "dkim_selector"}
WECHAT_FIELDS = {"appid": "appid", "api_base": "api_base"}
SETTING_FIELDS = {
    **{f"settings.{v}": k for k, v in EDIT_EMAIL_FIELDS.items()},
    **{f"settings.{v}": k for k, v in WECHAT_FIELDS.items()},
}
STATUS_LABELS = {"active": _l("Active"), "disabled": _l("Disabled")}
STATE_LABELS = {
    "bound": _l("Bound"),
    "connecting": _l("Connecting"),
    "down": _l("Down"),
    "elsewhere": _l("Bound by another gateway"),
    "idle": _l("Not bound"),
    "disabled": _l("Disabled"),
}
BIND_MODE = _l("Transceiver")


# --- forms ----------------------------------------------------------------------------------


def _channel_form(values: dict[str, Any] | None = None) -> Form:
    v = values or {}
    return Form(
        [
            FormField(
                "kind",
                _("Kind"),
                "select",
                v.get("kind", "sms"),
                required=True,
                options=[(k, str(label)) for k, label in KIND_LABELS.items()],
            ),
            FormField("name", _("Name"), value=v.get("name", ""), required=True, maxlength=120),
            FormField(
                "default_source",
                _("Default sender id"),
                value=v.get("default_source", ""),
                maxlength=21,
                help=_("SMS: the service code messages come from, e.g. 10690001."),
            ),
            FormField("appid", _("WeChat app id"), value=v.get("appid", ""), maxlength=64),
            FormField(
                "api_base",
                _("WeChat API address"),
                value=v.get("api_base", ""),
                maxlength=255,
                help=_("Leave empty for the official address."),
            ),
            FormField(
                "secret",
                _("WeChat app secret"),
                "password",
                maxlength=256,
                help=_("Stored encrypted; never shown again."),
            ),
            FormField("smtp_host", _("SMTP host"), value=v.get("smtp_host", ""), maxlength=255),
            FormField("smtp_port", _("SMTP port"), "number", v.get("smtp_port", "")),
            FormField(
                "tls",
                _("TLS"),
                "select",
                v.get("tls", "starttls"),
                options=[("none", _("None")), ("starttls", "STARTTLS"), ("tls", _("TLS from the start"))],
            ),
            FormField("smtp_username", _("SMTP user name"), value=v.get("smtp_username", ""), maxlength=255),
            FormField(
                "smtp_password",
                _("SMTP password"),
                "password",
                maxlength=256,
                help=_("Stored encrypted; never shown again."),
            ),
            FormField(
                "from_address",
                _("From address"),
                value=v.get("from_address", ""),
                maxlength=255,
                help=_("For example Acme <news@acme.example>."),
            ),
        ]
    )


def _channel_payload(raw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    keys = ("kind", "name", "default_source", "appid", "api_base", *EMAIL_FIELDS)
    data = {k: str(raw.get(k) or "").strip() for k in keys}
    payload: dict[str, Any] = {
        "kind": data["kind"],
        "name": data["name"],
        "default_source": data["default_source"],
    }
    secret = ""
    if data["kind"] == "wechat":
        payload["settings"] = {k: data[k] for k in ("appid", "api_base") if data[k]}
        secret = str(raw.get("secret") or "")
    elif data["kind"] == "email":
        payload["settings"] = {EMAIL_FIELDS[k]: data[k] for k in EMAIL_FIELDS if data[k]}
        secret = str(raw.get("smtp_password") or "")
    if secret:
        payload["secret"] = secret
    return payload, data


def _email_error(body: ChannelIn) -> tuple[str, str] | None:
    """(form field, message) when an email channel's settings would not let it send."""
    settings = dict(body.settings)
    problem = _email_problem(settings, body.secret)
    body.settings = settings
    return problem


def _email_problem(settings: dict[str, Any], secret: str | None) -> tuple[str, str] | None:
    """(form field, message) when these email settings would not let the channel send; the
    port is converted to a number in ``settings``."""
    from tessera.connect.email.pipeline import EmailChannelConfig

    if "port" in settings:
        try:
            port = int(settings["port"])
        except ValueError:
            return "smtp_port", _("Enter a whole number.")
        if port < 1:
            return "smtp_port", _("This number is too small.")
        if port > 65535:
            return "smtp_port", _("This number is too large.")
        settings["port"] = port
    try:
        EmailChannelConfig.from_channel(settings, secret)
    except ValueError as exc:
        text = str(exc) + " "
        if "settings.host " in text:
            return "smtp_host", _("An email channel needs its SMTP host.")
        if "settings.from " in text:
            return "from_address", _("Enter a valid email address.")
        if "settings.tls" in text or "TlsMode" in text:
            return "tls", _("Choose a value from the list.")
        if "settings.dkim_selector" in text:
            return "dkim_selector", _("A DKIM key needs its selector.")
        return "from_address", _("This value is not valid.")
    return None


def _pydantic_errors(form: Form, exc: ValidationError, rename: dict[str, str] | None = None) -> None:
    names = {f.name for f in form.fields}
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        name = (rename or {}).get(loc[0], loc[0]) if loc else ""
        msg = {
            "missing": _("This field is required."),
            "string_too_short": _("This is too short."),
            "string_too_long": _("This is too long."),
            "literal_error": _("Choose a value from the list."),
            "greater_than_equal": _("This number is too small."),
            "greater_than": _("This number is too small."),
            "less_than_equal": _("This number is too large."),
            "int_parsing": _("Enter a whole number."),
            "float_parsing": _("Enter a number."),
        }.get(str(e.get("type")), _("This value is not valid."))
        if name in names:
            form.errors.setdefault(name, msg)
        else:
            form.message = form.message or f"{name}: {msg}"
    _attach(form)


def _attach(form: Form) -> None:
    for f in form.fields:
        f.error = form.errors.get(f.name)


def _link_form(values: dict[str, Any] | None = None, *, new: bool = True) -> Form:
    v = values or {}
    fields = [
        FormField("name", _("Name"), value=v.get("name", ""), required=True, maxlength=120),
        FormField("host", _("Host"), value=v.get("host", ""), required=True, maxlength=255),
        FormField("port", _("Port"), "number", v.get("port", "2775"), required=True),
        FormField("system_id", _("System id"), value=v.get("system_id", ""), required=True, maxlength=15),
        FormField(
            "password",
            _("Password"),
            "password",
            required=new,
            maxlength=8,
            help=_("Stored encrypted; never shown again.")
            if new
            else _("Leave empty to keep the current one."),
        ),
        FormField("system_type", _("System type"), value=v.get("system_type", ""), maxlength=12),
        FormField(
            "window",
            _("Window"),
            "number",
            v.get("window", 10),
            help=_("Submits awaiting a response at once (1–1000)."),
        ),
        FormField("tps", _("Throughput limit (messages/s)"), "number", v.get("tps", "") or ""),
        FormField(
            "source_rules",
            _("Source address rules (JSON)"),
            "textarea",
            v.get("source_rules", ""),
            help=_(
                'For example {"allowed": ["10690001", "1069*"]}: the sender ids this link may send '
                "from (a trailing * matches a prefix). Empty: any."
            ),
        ),
    ]
    if not new:
        fields.append(
            FormField(
                "status",
                _("Status"),
                "select",
                v.get("status", "active"),
                required=True,
                options=[(k, str(label)) for k, label in STATUS_LABELS.items()],
            )
        )
    return Form(fields)


LINK_KEYS = ("name", "host", "port", "system_id", "system_type", "window", "tps", "source_rules")


def _link_payload(raw: Any, *, new: bool) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """Schema input from the link form. Editing, a field not posted stays as it is; an emptied
    system type or source rules field clears it."""
    keys = [*LINK_KEYS, *([] if new else ["status"])]
    data = {k: str(raw.get(k) or "").strip() for k in keys}
    payload: dict[str, Any] = {k: v for k, v in data.items() if v != "" and k != "source_rules"}
    if not new and "system_type" in raw and not data["system_type"]:
        payload["system_type"] = ""
    password = str(raw.get("password") or "")
    if password:
        payload["password"] = password
    rules_error = None
    if data["source_rules"]:
        try:
            rules = json.loads(data["source_rules"])
            if not isinstance(rules, dict):
                raise ValueError
            payload["source_rules"] = rules
        except ValueError:
            rules_error = _("Write a JSON object, e.g. {}.")
    elif not new and "source_rules" in raw:
        payload["source_rules"] = {}
    return payload, data, rules_error


def _link_values(link: Link) -> dict[str, Any]:
    return {
        "name": link.name,
        "host": link.host,
        "port": link.port,
        "system_id": link.system_id,
        "system_type": link.system_type,
        "window": link.window,
        "tps": link.tps or "",
        "source_rules": json.dumps(link.source_rules, ensure_ascii=False) if link.source_rules else "",
        "status": link.status,
    }


# --- live state -----------------------------------------------------------------------------


def _gateway(pg: Page) -> Any:
    return getattr(pg.request.app.state, "connect_gateway", None)


def _chart(key: str, live: list[q.LinkLive]) -> Chart:
    minutes = q.THROUGHPUT_MINUTES
    labels = q.minute_labels(utcnow(), minutes, zoneinfo.ZoneInfo(i18n.current_timezone()))
    sub = [round(sum(x.submits[i] for x in live) / 60, 2) for i in range(minutes)]
    rec = [round(sum(x.receipts[i] for x in live) / 60, 2) for i in range(minutes)]
    return Chart(
        key,
        _("Throughput, last %(n)s minutes (per second)") % {"n": minutes},
        "line",
        labels,
        [
            {"label": _("Submits/s"), "data": sub, "borderColor": "#206bc4", "backgroundColor": "#206bc4"},
            {"label": _("Receipts/s"), "data": rec, "borderColor": "#2fb344", "backgroundColor": "#2fb344"},
        ],
        {"animation": False, "scales": {"y": {"beginAtZero": True}}},
    )


async def _live_ctx(pg: Page, links: list[Link], key: str) -> dict[str, Any]:
    live = await q.link_live(pg.session, links, _gateway(pg))
    return {
        "live": live,
        "chart": _chart(key, live),
        "state_labels": STATE_LABELS,
        "gateways": await q.live_gateways(pg.session),
        "fmt": i18n.format_number,
    }


# --- pages ----------------------------------------------------------------------------------


@router.get("")
async def channels(pg: Manager) -> Response:
    chans = await service.list_channels(pg.session)
    links = await q.all_links(pg.session)
    names = {c.id: c.name for c in chans}
    return pg.render(
        "connect/channel_list.html",
        chans=chans,
        counts={c.id: sum(1 for x in links if x.channel_id == c.id) for c in chans},
        channel_names=names,
        kind_labels=KIND_LABELS,
        status_labels=STATUS_LABELS,
        live_url=f"{BASE}/live",
        **await _live_ctx(pg, links, "links-all"),
    )


@router.get("/live")
async def channels_live(pg: Manager) -> Response:
    chans = await service.list_channels(pg.session)
    return pg.render(
        "connect/channel_live.html",
        channel_names={c.id: c.name for c in chans},
        **await _live_ctx(pg, await q.all_links(pg.session), "links-all"),
    )


@router.get("/new")
async def channel_new(pg: Manager) -> Response:
    return pg.render("connect/channel_new.html", form=_channel_form())


@router.post("/new")
async def channel_create(pg: Manager, request: Request) -> Response:
    payload, data = _channel_payload(await request.form())
    form = _channel_form(data)
    try:
        body = ChannelIn.model_validate(payload)
    except ValidationError as exc:
        _pydantic_errors(form, exc)
        return pg.render("connect/channel_new.html", form=form, status_code=422)
    if body.kind == "wechat" and not body.settings.get("appid"):
        form.errors["appid"] = _("A WeChat channel needs its app id.")
    if body.kind == "email" and (problem := _email_error(body)) is not None:
        form.errors[problem[0]] = problem[1]
    if form.errors:
        _attach(form)
        return pg.render("connect/channel_new.html", form=form, status_code=422)
    try:
        async with pg.session.begin_nested():
            c = await service.create_channel(pg.session, body)
    except TesseraError as exc:
        apply_error(form, exc)
        return pg.render("connect/channel_new.html", form=form, status_code=422)
    return pg.redirect(f"{BASE}/{c.id}", toast=_("Channel created."))


def _edit_form(c: Channel, values: dict[str, Any] | None = None) -> Form:
    v = values or {"name": c.name, "status": c.status, "default_source": c.default_source}
    form = schema_form(
        ChannelPatch,
        v,
        labels={"name": _("Name"), "status": _("Status"), "default_source": _("Default sender id")},
        options={"status": [(k, str(label)) for k, label in STATUS_LABELS.items()]},
        only=("name", "status", "default_source"),
    )
    settings = c.settings or {}
    keep = _("Leave empty to keep the current one.")
    if c.kind == "wechat":
        form.fields += [
            FormField(
                "appid", _("WeChat app id"), value=v.get("appid", settings.get("appid", "")), maxlength=64
            ),
            FormField(
                "api_base",
                _("WeChat API address"),
                value=v.get("api_base", settings.get("api_base", "")),
                maxlength=255,
                help=_("Leave empty for the official address."),
            ),
            FormField("secret", _("WeChat app secret"), "password", maxlength=256, help=keep),
        ]
    elif c.kind == "email":
        current = {k: settings.get(key, "") for k, key in EDIT_EMAIL_FIELDS.items()}
        val = {k: v.get(k, current[k]) for k in current}
        form.fields += [
            FormField("smtp_host", _("SMTP host"), value=val["smtp_host"], maxlength=255),
            FormField("smtp_port", _("SMTP port"), "number", val["smtp_port"]),
            FormField(
                "tls",
                _("TLS"),
                "select",
                val["tls"] or "none",
                options=[("none", _("None")), ("starttls", "STARTTLS"), ("tls", _("TLS from the start"))],
            ),
            FormField("smtp_username", _("SMTP user name"), value=val["smtp_username"], maxlength=255),
            FormField("smtp_password", _("SMTP password"), "password", maxlength=256, help=keep),
            FormField("from_address", _("From address"), value=val["from_address"], maxlength=255),
            FormField(
                "dkim_selector",
                _("DKIM selector"),
                value=val["dkim_selector"],
                maxlength=63,
                help=_("Needed when the channel signs with a DKIM key."),
            ),
        ]
    return form


def _settings_change(c: Channel, raw: Any) -> tuple[dict[str, Any], str | None]:
    """Settings posted by the edit form (an emptied field removes its setting; a field not
    posted is left alone) and the new secret, if one was typed."""
    fields = WECHAT_FIELDS if c.kind == "wechat" else EDIT_EMAIL_FIELDS if c.kind == "email" else {}
    change: dict[str, Any] = {}
    for name, key in fields.items():
        if name in raw:
            value = str(raw.get(name) or "").strip()
            change[key] = value or None
    secret = str(raw.get("secret" if c.kind == "wechat" else "smtp_password") or "")
    if c.kind == "email" and secret and (c.secret or "").lstrip().startswith("{"):
        try:  # the stored secret also holds the DKIM key: change the password only
            stored = json.loads(c.secret or "{}")
            secret = json.dumps({**stored, "smtp_password": secret})
        except ValueError:
            pass
    return change, (secret or None) if c.kind in ("wechat", "email") else None


async def _detail(
    pg: Page,
    channel_id: uuid.UUID,
    *,
    form: Form | None = None,
    link_form: Form | None = None,
    status: int = 200,
) -> Response:
    c = await service.get_channel(pg.session, channel_id)
    links = await service.list_links(pg.session, channel_id)
    return pg.render(
        "connect/channel_detail.html",
        status_code=status,
        c=c,
        form=form or _edit_form(c),
        link_form=link_form or (_link_form() if c.kind == "sms" else None),
        kind_label=KIND_LABELS.get(c.kind, c.kind),
        status_label=STATUS_LABELS.get(c.status, c.status),
        bind_mode=BIND_MODE,
        live_url=f"{BASE}/{c.id}/live",
        channel_names={c.id: c.name},
        actions=[Action(_("Routes"), f"{PREFIX}/connect/routes?channel={c.id}")] if c.kind == "sms" else [],
        **await _live_ctx(pg, links, f"links-{c.id}"),
    )


@router.get("/{channel_id}")
async def channel_detail(channel_id: uuid.UUID, pg: Manager) -> Response:
    return await _detail(pg, channel_id)


@router.get("/{channel_id}/live")
async def channel_live(channel_id: uuid.UUID, pg: Manager) -> Response:
    c = await service.get_channel(pg.session, channel_id)
    links = await service.list_links(pg.session, channel_id)
    return pg.render(
        "connect/channel_live.html",
        channel_names={c.id: c.name},
        **await _live_ctx(pg, links, f"links-{c.id}"),
    )


@router.post("/{channel_id}")
async def channel_update(channel_id: uuid.UUID, pg: Manager, request: Request) -> Response:
    c = await service.get_channel(pg.session, channel_id)
    raw = await request.form()
    only = ("name", "status", "default_source")
    data = form_data(raw, ChannelPatch, only=only)
    data["name"] = str(raw.get("name") or "").strip()  # an emptied name is an error, not "unchanged"
    posted = {k: str(raw.get(k) or "").strip() for k in (*WECHAT_FIELDS, *EDIT_EMAIL_FIELDS) if k in raw}
    form = _edit_form(c, {"name": "", "status": "", "default_source": "", **posted})
    body = validate_form(ChannelPatch, data, form)
    if body is not None:
        assert isinstance(body, ChannelPatch)
        if "default_source" not in data:
            body.default_source = ""  # an emptied field clears the sender id
        change, secret = _settings_change(c, raw)
        problem = _channel_settings_problem(c, change, secret)
        if problem is not None:
            form.errors[problem[0]] = problem[1]
            _attach(form)
        else:
            if change:
                body.settings = change
            if secret:
                body.secret = secret
            try:
                async with pg.session.begin_nested():
                    await service.update_channel(pg.session, channel_id, body)
                return pg.redirect(f"{BASE}/{channel_id}", toast=_("Changes saved."))
            except TesseraError as exc:
                if exc.field in SETTING_FIELDS:
                    form.errors[SETTING_FIELDS[exc.field]] = _("This value is not valid.")
                    _attach(form)
                else:
                    apply_error(form, exc)
    return await _detail(pg, channel_id, form=refill(form, data), status=422)


def _channel_settings_problem(
    c: Channel, change: dict[str, Any], secret: str | None
) -> tuple[str, str] | None:
    """(form field, message) when the edited settings would not let the channel send."""
    if c.kind not in ("wechat", "email") or (not change and not secret):
        return None
    settings = dict(c.settings or {})
    for k, v in change.items():
        if v is None:
            settings.pop(k, None)
        else:
            settings[k] = v
    if c.kind == "wechat":
        return None if settings.get("appid") else ("appid", _("A WeChat channel needs its app id."))
    problem = _email_problem(settings, secret or c.secret)
    if problem is None and "port" in change and change["port"] is not None:
        change["port"] = settings["port"]  # as a number
    return problem


@router.post("/{channel_id}/links")
async def link_create(channel_id: uuid.UUID, pg: Manager, request: Request) -> Response:
    await service.get_channel(pg.session, channel_id)
    payload, data, rules_error = _link_payload(await request.form(), new=True)
    form = _link_form(data)
    body = None
    try:
        body = LinkIn.model_validate(payload)
    except ValidationError as exc:
        _pydantic_errors(form, exc)
    if rules_error:
        form.errors["source_rules"] = rules_error
        _attach(form)
    if body is not None and not form.errors:
        try:
            async with pg.session.begin_nested():
                link = await service.create_link(pg.session, channel_id, body)
            return pg.redirect(f"{BASE}/links/{link.id}", toast=_("Link added."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _detail(pg, channel_id, link_form=form, status=422)


async def _link_page(pg: Page, link: Link, form: Form | None = None, status: int = 200) -> Response:
    c = await service.get_channel(pg.session, link.channel_id)
    values = _link_values(link)
    return pg.render(
        "connect/channel_link.html",
        status_code=status,
        c=c,
        link=link,
        form=form or _link_form(values, new=False),
        bind_mode=BIND_MODE,
        status_label=STATUS_LABELS.get(link.status, link.status),
        channel_names={c.id: c.name},
        live_url=f"{BASE}/links/{link.id}/live",
        actions=[
            Action(
                _("Delete link"),
                f"{BASE}/links/{link.id}/delete",
                "post",
                danger=True,
                confirm=_("Delete this link? Its routes are deleted with it."),
            )
        ],
        **await _live_ctx(pg, [link], f"link-{link.id}"),
    )


@router.get("/links/{link_id}")
async def link_detail(link_id: uuid.UUID, pg: Manager) -> Response:
    return await _link_page(pg, await service.get_link(pg.session, link_id))


@router.get("/links/{link_id}/live")
async def link_live(link_id: uuid.UUID, pg: Manager) -> Response:
    link = await service.get_link(pg.session, link_id)
    c = await service.get_channel(pg.session, link.channel_id)
    return pg.render(
        "connect/channel_live.html",
        channel_names={c.id: c.name},
        **await _live_ctx(pg, [link], f"link-{link.id}"),
    )


@router.post("/links/{link_id}")
async def link_update(link_id: uuid.UUID, pg: Manager, request: Request) -> Response:
    link = await service.get_link(pg.session, link_id)
    raw = await request.form()
    payload, data, rules_error = _link_payload(raw, new=False)
    form = _link_form({**_link_values(link), **{k: v for k, v in data.items() if k in raw}}, new=False)
    try:
        body = LinkPatch.model_validate(payload)
    except ValidationError as exc:
        _pydantic_errors(form, exc)
        body = None
    if rules_error:
        form.errors["source_rules"] = rules_error
        _attach(form)
    if body is None or form.errors:
        return await _link_page(pg, link, form, 422)
    try:
        async with pg.session.begin_nested():
            await service.update_link(pg.session, link_id, body)
    except TesseraError as exc:
        apply_error(form, exc)
        return await _link_page(pg, link, form, 422)
    return pg.redirect(f"{BASE}/links/{link_id}", toast=_("Changes saved."))


@router.post("/links/{link_id}/delete")
async def link_delete(link_id: uuid.UUID, pg: Manager) -> Response:
    link = await service.get_link(pg.session, link_id)
    channel_id = link.channel_id
    await service.delete_link(pg.session, link_id)
    return pg.redirect(f"{BASE}/{channel_id}", toast=_("Link deleted."))
