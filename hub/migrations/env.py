"""Alembic environment: the engine comes from :class:`hub.store.Store`, never from a file."""

import importlib

from alembic import context
from sqlmodel import SQLModel

import hub.store

for module in hub.store.TABLE_MODULES:  # every module that defines tables registers them on the metadata
    importlib.import_module(module)

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=SQLModel.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    context.run_migrations()
