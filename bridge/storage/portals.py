"""Portal rooms: one DM per (Matrix user, phone number)."""

from __future__ import annotations

from sqlalchemy import select

from .models import Portal
from .repository import Repository


class PortalStore(Repository):
    async def room_for(self, user_id: str, number: str) -> str | None:
        async with self.transaction() as session:
            portal = await session.get(Portal, (user_id, number))
            return portal.room_id if portal else None

    async def by_room(self, room_id: str) -> Portal | None:
        async with self.transaction() as session:
            return (await session.scalars(select(Portal).where(Portal.room_id == room_id))).first()

    async def save(self, user_id: str, number: str, room_id: str) -> None:
        async with self.transaction() as session:
            await session.merge(Portal(user_id=user_id, number=number, room_id=room_id))
