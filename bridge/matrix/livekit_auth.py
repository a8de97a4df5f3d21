"""Getting a ghost into a call's LiveKit room: its name, identities, and a token.

With the SFU's API key and secret configured, the bridge mints the ghost's token. Without
them, it asks the MatrixRTC auth service named in the session's focus, with the ghost's
OpenID token from the homeserver, exactly as Element Call does (DESIGN §4): `/sfu/get`,
and the newer `/get_token` where that is what the service has. Extra fields are rejected by
the real service, so the requests carry exactly what it expects.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from livekit import api
from mautrix.api import Method, Path
from mautrix.appservice import IntentAPI
from mautrix.errors import MatrixError

from ..config import LiveKitConfig
from .rtc import SLOT_ID

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


class LiveKitAuthError(Exception):
    """No way into the SFU: the message says what refused and why."""


def _unpadded_b64_sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def livekit_room_name(room_id: str, slot_id: str = SLOT_ID) -> str:
    """The LiveKit room of a Matrix room's call, as current MatrixRTC services name it."""
    return _unpadded_b64_sha256(json.dumps([room_id, slot_id], separators=(",", ":")))


def state_identity(user_id: str, device_id: str) -> str:
    """A participant's identity for a state-event membership."""
    return f"{user_id}:{device_id}"


@dataclass(frozen=True)
class LiveKitAccess:
    url: str
    token: str


class LiveKitTokens:
    def __init__(self, config: LiveKitConfig) -> None:
        self.config = config

    def mint(self, room_id: str, identity: str, name: str) -> LiveKitAccess:
        assert self.config.api_key and self.config.api_secret
        grant = api.VideoGrants(
            room_join=True,
            room=livekit_room_name(room_id),
            can_publish=True,
            can_subscribe=True,
        )
        token = (
            api.AccessToken(self.config.api_key, self.config.api_secret)
            .with_identity(identity)
            .with_name(name)
            .with_grants(grant)
            .to_jwt()
        )
        return LiveKitAccess(self.config.url, token)

    async def for_ghost(
        self, ghost: IntentAPI, room_id: str, device_id: str, focus: dict[str, Any], name: str
    ) -> LiveKitAccess:
        if self.config.api_key and self.config.api_secret:
            return self.mint(room_id, state_identity(ghost.mxid, device_id), name)
        service = focus.get("livekit_service_url")
        if not isinstance(service, str) or not service:
            raise LiveKitAuthError(
                "the call's focus names no MatrixRTC service, and no LiveKit API key is "
                "configured (livekit.api_key)"
            )
        openid = await self._openid(ghost)
        alias = focus.get("livekit_alias") or room_id
        sfu_get = {"room": alias, "openid_token": openid, "device_id": device_id}
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
            status, body = await self._post(session, f"{service.rstrip('/')}/sfu/get", sfu_get)
            if status == 404:
                get_token = {
                    "room_id": room_id,
                    "slot_id": SLOT_ID,
                    "openid_token": openid,
                    "member": {
                        "id": device_id,
                        "claimed_user_id": ghost.mxid,
                        "claimed_device_id": device_id,
                    },
                }
                status, body = await self._post(
                    session, f"{service.rstrip('/')}/get_token", get_token
                )
        if status != 200 or not isinstance(body, dict):
            raise LiveKitAuthError(
                f"the MatrixRTC service at {service} answered {status}: {str(body)[:200]}"
            )
        url, jwt = body.get("url"), body.get("jwt")
        if not isinstance(url, str) or not isinstance(jwt, str):
            raise LiveKitAuthError(f"the MatrixRTC service at {service} sent no url and jwt")
        return LiveKitAccess(url, jwt)

    @staticmethod
    async def _openid(ghost: IntentAPI) -> dict[str, Any]:
        path = Path.v3.user[ghost.mxid].openid.request_token
        try:
            token = await ghost.api.request(Method.POST, path, {})
        except MatrixError as e:
            raise LiveKitAuthError(f"the homeserver gave no OpenID token: {e}") from e
        return {
            k: token[k] for k in ("access_token", "token_type", "matrix_server_name", "expires_in")
        }

    @staticmethod
    async def _post(
        session: aiohttp.ClientSession, url: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        try:
            async with session.post(url, json=body) as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
            raise LiveKitAuthError(f"cannot reach the MatrixRTC service {url}: {e}") from e
