"""A fake WeChat API server for tests and demos: the official token and template-send endpoints.

Serve it in-process with ``httpx.ASGITransport(app=FakeWeChat().app)`` or with uvicorn on a
loopback port. It checks appid/secret and tokens exactly like the real API (errcode 40001 for
an unknown token, 40125 for a bad secret, 40003 for an empty openid, 40037 for an unknown
template id) and records every accepted message."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from fastapi import FastAPI, Request


class FakeWeChat:
    def __init__(
        self, appid: str = "wx-test", secret: str = "s3cret", templates: tuple[str, ...] = ("TPL-1",)
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.templates = set(templates)
        self.tokens: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self.token_requests = 0
        self._ids = itertools.count(200228332)
        self.app = FastAPI()
        self.app.get("/cgi-bin/token")(self._token)
        self.app.post("/cgi-bin/message/template/send")(self._send)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    async def _token(self, grant_type: str, appid: str, secret: str) -> dict[str, Any]:
        self.token_requests += 1
        if grant_type != "client_credential" or appid != self.appid or secret != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        token = secrets.token_hex(16)
        self.tokens.add(token)
        return {"access_token": token, "expires_in": 7200}

    async def _send(self, request: Request, access_token: str) -> dict[str, Any]:
        if access_token not in self.tokens:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        body = await request.json()
        if not body.get("touser"):
            return {"errcode": 40003, "errmsg": "invalid openid"}
        if body.get("template_id") not in self.templates:
            return {"errcode": 40037, "errmsg": "invalid template_id"}
        if not isinstance(body.get("data"), dict) or any("value" not in v for v in body["data"].values()):
            return {"errcode": 47001, "errmsg": "data format error"}
        msgid = next(self._ids)
        self.sent.append({**body, "msgid": msgid})
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}
