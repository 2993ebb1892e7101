"""WeChat official-account template messages over the official HTTP API.

* ``GET  {api_base}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…`` →
  ``{"access_token": "…", "expires_in": 7200}`` (cached until shortly before expiry);
* ``POST {api_base}/cgi-bin/message/template/send?access_token=…`` with
  ``{"touser": openid, "template_id": …, "url": …, "data": {"key": {"value": "…"}}}`` →
  ``{"errcode": 0, "errmsg": "ok", "msgid": 200228332}``.

The final status arrives later as the ``TEMPLATESENDJOBFINISH`` event push (``Status`` =
``success`` / ``failed:user block`` / ``failed: system failed``); :func:`finish_status` maps it.
An expired or invalid token (40001, 40014, 42001) is refreshed once and the send retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_API_BASE = "https://api.weixin.qq.com"
TOKEN_ERRORS = frozenset({40001, 40014, 42001})


class WeChatError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class _Token:
    value: str
    expires_at: float


class WeChatClient:
    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.http = httpx.AsyncClient(base_url=api_base, transport=transport, timeout=timeout)
        self._token: _Token | None = None

    async def close(self) -> None:
        await self.http.aclose()

    async def token(self, *, refresh: bool = False) -> str:
        if not refresh and self._token and self._token.expires_at > time.monotonic():
            return self._token.value
        r = await self.http.get(
            "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
        body = r.json()
        if "access_token" not in body:
            raise WeChatError(int(body.get("errcode", -1)), str(body.get("errmsg", "no token")))
        self._token = _Token(body["access_token"], time.monotonic() + int(body.get("expires_in", 7200)) - 300)
        return self._token.value

    async def send_template(
        self, openid: str, template_id: str, data: dict[str, str], *, url: str | None = None
    ) -> str:
        """Send one template message; return WeChat's ``msgid``."""
        payload: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
        }
        if url:
            payload["url"] = url
        for attempt in (0, 1):
            token = await self.token(refresh=attempt == 1)
            r = await self.http.post(
                "/cgi-bin/message/template/send", params={"access_token": token}, json=payload
            )
            body = r.json()
            code = int(body.get("errcode", -1))
            if code == 0:
                return str(body["msgid"])
            if code in TOKEN_ERRORS and attempt == 0:
                continue
            raise WeChatError(code, str(body.get("errmsg", "")))
        raise WeChatError(-1, "unreachable")  # pragma: no cover


def finish_status(status: str) -> tuple[str, str | None]:
    """Map the ``Status`` of a TEMPLATESENDJOBFINISH push to (status, reason)."""
    if status == "success":
        return "delivered", None
    if "user block" in status:
        return "failed", "wechat.user_block"
    return "failed", "wechat.system_failed"
