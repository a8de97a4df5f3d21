"""The bridge's encryption devices, one row per Matrix user the bridge speaks as."""

from __future__ import annotations

from typing import Any

from .models import CryptoDevice
from .repository import Repository


class CryptoStore(Repository):
    async def load(self, user_id: str) -> tuple[str, dict[str, Any]] | None:
        """The user's device id and pickled machine, if it has one."""
        async with self.transaction() as session:
            row = await session.get(CryptoDevice, user_id)
            return (row.device_id, row.pickle) if row else None

    async def save(self, user_id: str, device_id: str, pickle: dict[str, Any]) -> None:
        async with self.transaction() as session:
            await session.merge(CryptoDevice(user_id=user_id, device_id=device_id, pickle=pickle))
