"""A stand-in for the MatrixRTC auth service (lk-jwt-service), with its contract enforced.

Like the real one it rejects unknown or missing fields, checks the OpenID token with the
homeserver (`/_matrix/federation/v1/openid/userinfo`), and only then mints a LiveKit token
for the caller's own identity in the call's LiveKit room.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from livekit import api

from bridge.matrix.livekit_auth import livekit_room_name, state_identity

from . import ROOT
from .livekit import API_KEY, API_SECRET
from .procs import ManagedProcess, free_port

OPENID_FIELDS = {"access_token", "token_type", "matrix_server_name", "expires_in"}
SFU_GET_FIELDS = {"room", "openid_token", "device_id"}
GET_TOKEN_FIELDS = {"room_id", "slot_id", "openid_token", "member"}
MEMBER_FIELDS = {"id", "claimed_user_id", "claimed_device_id"}


# What lk-jwt-service sends with every answer of its token endpoints (its corsJSON), so a
# browser (Element Call) may call it from another origin; a preflight gets 200 and these.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Accept, Content-Type, Content-Length, Accept-Encoding, "
    "X-CSRF-Token",
}
CORS_PATHS = ("/sfu/get", "/get_token")


@web.middleware
async def _cors(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path not in CORS_PATHS:
        return await handler(request)  # type: ignore[no-any-return]
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=200)
    else:
        response = await handler(request)
    response.headers.update(CORS_HEADERS)
    return response


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


class AuthServiceStandIn:
    def __init__(self, homeserver: str, livekit_url: str, key: str, secret: str) -> None:
        self.homeserver = homeserver
        self.livekit_url = livekit_url
        self.key = key
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[dict[str, Any]] = []
        self.failing = False  # answer 500 to everything, as a broken service would
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[_cors])
        for path in CORS_PATHS:
            app.router.add_route("OPTIONS", path, self._health)  # answered by _cors
        app.router.add_post("/sfu/get", self._sfu_get)
        app.router.add_post("/get_token", self._get_token)
        app.router.add_get("/_test/health", self._health)
        app.router.add_post("/_test/failing", self._set_failing)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({})

    async def _set_failing(self, request: web.Request) -> web.Response:
        self.failing = bool((await request.json()).get("failing"))
        return web.json_response({"failing": self.failing})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _body(self, request: web.Request, fields: set[str]) -> dict[str, Any] | str:
        try:
            body = await request.json()
        except ValueError:
            return "body is not JSON"
        self.requests.append({"path": request.path, "body": body})
        print("REQUEST " + json.dumps({"path": request.path, "body": body}), flush=True)
        if not isinstance(body, dict) or set(body) != fields:
            got = sorted(body) if isinstance(body, dict) else body
            return f"expected exactly {sorted(fields)}, got {got}"
        openid = body.get("openid_token")
        if not isinstance(openid, dict) or set(openid) != OPENID_FIELDS:
            return f"openid_token must have exactly {sorted(OPENID_FIELDS)}"
        return body

    async def _user_of(self, openid: dict[str, Any]) -> str | None:
        url = f"{self.homeserver}/_matrix/federation/v1/openid/userinfo"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params={"access_token": openid["access_token"]}) as response,
        ):
            if response.status != 200:
                return None
            data = await response.json()
            return str(data.get("sub")) if data.get("sub") else None

    def _token(self, room_id: str, identity: str) -> str:
        grant = api.VideoGrants(
            room_join=True, room=livekit_room_name(room_id), can_publish=True, can_subscribe=True
        )
        return (
            api.AccessToken(self.key, self.secret)
            .with_identity(identity)
            .with_grants(grant)
            .to_jwt()
        )

    async def _sfu_get(self, request: web.Request) -> web.Response:
        if self.failing:
            return _error(500, "M_UNKNOWN", "the service is broken (on purpose)")
        body = await self._body(request, SFU_GET_FIELDS)
        if isinstance(body, str):
            return _error(400, "M_BAD_JSON", body)
        user = await self._user_of(body["openid_token"])
        if user is None:
            return _error(401, "M_UNAUTHORIZED", "the OpenID token was not accepted")
        token = self._token(body["room"], state_identity(user, body["device_id"]))
        return web.json_response({"url": self.livekit_url, "jwt": token})

    async def _get_token(self, request: web.Request) -> web.Response:
        if self.failing:
            return _error(500, "M_UNKNOWN", "the service is broken (on purpose)")
        body = await self._body(request, GET_TOKEN_FIELDS)
        if isinstance(body, str):
            return _error(400, "M_BAD_JSON", body)
        member = body["member"]
        if not isinstance(member, dict) or set(member) != MEMBER_FIELDS:
            return _error(400, "M_BAD_JSON", f"member must have exactly {sorted(MEMBER_FIELDS)}")
        user = await self._user_of(body["openid_token"])
        if user is None or user != member["claimed_user_id"]:
            return _error(401, "M_UNAUTHORIZED", "the OpenID token was not accepted")
        identity = state_identity(user, member["claimed_device_id"])
        return web.json_response(
            {"url": self.livekit_url, "jwt": self._token(body["room_id"], identity)}
        )


class AuthServiceProcess:
    """The stand-in in its own process, so every test process can use it."""

    def __init__(self, workdir: Path, homeserver: str, livekit_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "rtc-auth",
            [sys.executable, "-m", "teststack.rtc_auth", str(self.port), homeserver, livekit_url],
            workdir / "rtc-auth.log",
            cwd=ROOT,
        )

    def start(self) -> None:
        self.process.start()
        self.process.wait_http(f"{self.url}/_test/health", 20)

    def set_failing(self, failing: bool) -> None:
        request = urllib.request.Request(
            f"{self.url}/_test/failing",
            data=json.dumps({"failing": failing}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        self.process.stop()


def main() -> None:
    port, homeserver, livekit_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    service = AuthServiceStandIn(homeserver, livekit_url, API_KEY, API_SECRET)
    service.port = port

    async def serve() -> None:
        await service.start()
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
