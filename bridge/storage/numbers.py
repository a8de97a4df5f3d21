"""Phone numbers linked to Matrix rooms."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select

from .models import NumberLink
from .repository import Repository


class NumberStore(Repository):
    async def link(self, number: str, room_id: str, linked_by: str, call_mode: str = "rtc") -> None:
        async with self.transaction() as session:
            await session.merge(
                NumberLink(number=number, room_id=room_id, linked_by=linked_by, call_mode=call_mode)
            )

    async def unlink(self, number: str) -> bool:
        async with self.transaction() as session:
            result = await session.execute(delete(NumberLink).where(NumberLink.number == number))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def room_for(self, number: str) -> str | None:
        link = await self.get(number)
        return link.room_id if link else None

    async def get(self, number: str) -> NumberLink | None:
        async with self.transaction() as session:
            return await session.get(NumberLink, number)

    async def all(self) -> Sequence[NumberLink]:
        async with self.transaction() as session:
            return (await session.scalars(select(NumberLink).order_by(NumberLink.number))).all()
