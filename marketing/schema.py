"""Schema helpers the apps' migrations share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib.postgres import operations as postgres
from django.db import migrations

Pairs = tuple[tuple[str, str], ...]  # (model name, field name)


def drop_indexes(app: str, fk_indexes: Pairs, like_indexed: Pairs = (), *,
                 concurrently: bool = False) -> migrations.RunPython:
    """Return an operation dropping the single-column indexes of ``fk_indexes`` (and, on PostgreSQL, the
    ``varchar_pattern_ops`` "_like" indexes of ``like_indexed``), and creating them again when reversed.

    Only the indexes: Django's ``AlterField(db_index=False)`` on a foreign key
    also drops the foreign key and adds it back, which checks every row of the
    table while holding its lock. Use it as the database side of a
    ``SeparateDatabaseAndState`` whose state side is that ``AlterField``.
    With ``concurrently`` (in a migration with ``atomic = False``), PostgreSQL
    drops them without locking out reads and writes of the table.
    """

    def indexes(apps: Any, schema_editor: Any, pairs: Pairs, suffix: str) -> Iterator[tuple[Any, Any, str]]:
        for model_name, field_name in pairs:
            model = apps.get_model(app, model_name)
            field = model._meta.get_field(field_name)
            yield model, field, schema_editor._create_index_name(model._meta.db_table, [field.column], suffix=suffix)

    def pg(schema_editor: Any) -> bool:
        return schema_editor.connection.vendor == "postgresql"

    def forward(apps: Any, schema_editor: Any) -> None:
        found = list(indexes(apps, schema_editor, fk_indexes, ""))
        if pg(schema_editor):
            found += indexes(apps, schema_editor, like_indexed, "_like")
        how = "CONCURRENTLY " if concurrently and pg(schema_editor) else ""
        for _model, _field, name in found:
            schema_editor.execute(f"DROP INDEX {how}IF EXISTS {schema_editor.quote_name(name)}")

    def backward(apps: Any, schema_editor: Any) -> None:
        how = {"concurrently": True} if concurrently and pg(schema_editor) else {}
        for model, field, _name in indexes(apps, schema_editor, fk_indexes, ""):
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field], **how))
        if pg(schema_editor):
            for model, field, _name in indexes(apps, schema_editor, like_indexed, "_like"):
                schema_editor.execute(schema_editor._create_like_index_sql(model, field))

    return migrations.RunPython(forward, backward, elidable=True)


class _ConcurrentlyOnPostgreSQL:
    """Run the PostgreSQL ``CONCURRENTLY`` operation there, and ``plain`` on other databases (SQLite)."""

    plain: type[migrations.AddIndex] | type[migrations.RemoveIndex]

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexConcurrently(_ConcurrentlyOnPostgreSQL, postgres.AddIndexConcurrently):
    """Create an index without locking out writes: ``CREATE INDEX CONCURRENTLY`` on PostgreSQL.

    A plain ``CREATE INDEX`` blocks every insert and update of the table until
    the index is built, which on a big consent ledger means signups wait. On
    other databases (SQLite) the index is created the plain way. The migration
    must set ``atomic = False``.

    Django records such a migration as applied only after its last step, so
    after an interruption ``migrate`` runs every step again. Each build
    therefore first drops an index of its name: one this step built before
    the interruption, or the invalid one PostgreSQL keeps when a
    ``CONCURRENTLY`` build is cut short.
    """

    plain = migrations.AddIndex

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        how = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        schema_editor.execute(f"DROP INDEX {how}IF EXISTS {schema_editor.quote_name(self.index.name)}")
        super().database_forwards(app_label, schema_editor, from_state, to_state)


class RemoveIndexConcurrently(_ConcurrentlyOnPostgreSQL, postgres.RemoveIndexConcurrently):
    """Drop an index without locking out reads and writes: ``DROP INDEX CONCURRENTLY`` on PostgreSQL.

    A plain ``DROP INDEX`` waits for every running query on the table and
    blocks all new ones while it waits. Elsewhere (SQLite) the plain way. The
    migration must set ``atomic = False``.
    """

    plain = migrations.RemoveIndex
