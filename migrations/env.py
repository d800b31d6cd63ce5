"""Alembic environment: runs on the connection the server hands in, or opens one from the settings."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from services.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    from config import get_settings
    from services.storage.db import create_engine, prepare_data_dir

    settings = get_settings()
    if settings.DATABASE_URL is None:
        prepare_data_dir(settings.DATA_DIR)
    engine = create_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_from_settings())
