"""Schema helpers the apps' migrations share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import migrations

Pairs = tuple[tuple[str, str], ...]  # (model name, field name)


def drop_indexes(app: str, fk_indexes: Pairs, like_indexed: Pairs = ()) -> migrations.RunPython:
    """Return an operation dropping the single-column indexes of ``fk_indexes`` (and, on PostgreSQL, the
    ``varchar_pattern_ops`` "_like" indexes of ``like_indexed``), and creating them again when reversed.

    Only the indexes: Django's ``AlterField(db_index=False)`` on a foreign key
    also drops the foreign key and adds it back, which checks every row of the
    table while holding its lock. Use it as the database side of a
    ``SeparateDatabaseAndState`` whose state side is that ``AlterField``.
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
        for _model, _field, name in found:
            schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")

    def backward(apps: Any, schema_editor: Any) -> None:
        for model, field, _name in indexes(apps, schema_editor, fk_indexes, ""):
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))
        if pg(schema_editor):
            for model, field, _name in indexes(apps, schema_editor, like_indexed, "_like"):
                schema_editor.execute(schema_editor._create_like_index_sql(model, field))

    return migrations.RunPython(forward, backward, elidable=True)
