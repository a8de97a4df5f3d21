"""Runtime state of SIP trunks, as the workers report it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from .models import TrunkState, utcnow
from .repository import Repository


class TrunkStateStore(Repository):
    async def set(
        self, name: str, registration: str, status_code: int | None, reason: str | None
    ) -> None:
        async with self.transaction() as session:
            await session.merge(
                TrunkState(
                    name=name,
                    registration=registration,
                    status_code=status_code,
                    reason=reason,
                    updated_at=utcnow(),
                )
            )

    async def all(self) -> Sequence[TrunkState]:
        async with self.transaction() as session:
            return (await session.scalars(select(TrunkState).order_by(TrunkState.name))).all()
