"""What every repository shares: one session per operation, errors as StorageError."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from .database import Database, StorageError, describe_db_error
from .models import Base


class Repository:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits together, or not at all."""
        try:
            async with self.db.session() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError, OSError, ConnectionError) as e:
            raise StorageError(f"database error: {describe_db_error(e)}") from e

    def insert_ignoring_duplicates(self, model: type[Base], rows: list[dict[str, Any]]) -> Insert:
        dialect = sqlite if self.db.is_sqlite else postgresql
        statement: Insert = dialect.insert(model).values(rows).on_conflict_do_nothing()
        return statement
