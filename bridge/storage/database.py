"""The connection pool and the schema upgrade (alembic, the only source of schema)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


class StorageError(Exception):
    """The database could not be used; the message says what to check."""


def describe_db_error(error: BaseException) -> str:
    """One line an admin can act on, without the password from the URL."""
    original = getattr(error, "orig", None) or error
    return (
        f"{original.__class__.__name__}: {str(original).splitlines()[0] if str(original) else ''}"
    )


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _sqlite_pragmas(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets readers and the single writer proceed together; FULL keeps commits durable.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(url)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(
                url, pool_size=pool_size, pool_pre_ping=True, pool_timeout=10
            )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def upgrade(self) -> None:
        """Apply every migration up to head."""
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        except (OperationalError, DBAPIError, OSError) as e:
            raise StorageError(f"cannot upgrade the database schema: {describe_db_error(e)}") from e

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )

    @staticmethod
    def head_revision() -> str | None:
        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError) as e:
            raise StorageError(f"database unreachable: {describe_db_error(e)}") from e

    async def close(self) -> None:
        await self.engine.dispose()
