"""Ghost users: one Matrix user per remote phone number."""

from __future__ import annotations

from .models import Ghost
from .repository import Repository


class GhostStore(Repository):
    async def get(self, user_id: str) -> Ghost | None:
        async with self.transaction() as session:
            return await session.get(Ghost, user_id)

    async def save(self, user_id: str, number: str, display_name: str | None) -> None:
        async with self.transaction() as session:
            await session.merge(
                Ghost(user_id=user_id, number=number, display_name=display_name, registered=True)
            )
