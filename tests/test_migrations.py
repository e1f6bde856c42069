"""Migrations must be safe to run on a big, busy installation."""

import io

import pytest
from django.core.management import call_command
from django.db import connection, migrations, models
from django.db.migrations.loader import MigrationLoader

from marketing.schema import AddIndexConcurrently

OUR_APPS = {"subscribers", "campaigns", "preferences"}


def _flipped_foreign_key_indexes(app, operations, state):
    """The AlterFields among ``operations`` that change only whether a foreign key is indexed."""
    found = []
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            # Only its database side runs against the database.
            found += _flipped_foreign_key_indexes(app, operation.database_operations, state.clone())
        elif isinstance(operation, migrations.AlterField) and isinstance(operation.field, models.ForeignKey):
            before = state.models[app, operation.model_name_lower].fields[operation.name]
            old_kwargs, new_kwargs = before.deconstruct()[3], operation.field.deconstruct()[3]
            old_kwargs.pop("db_index", None)
            new_kwargs.pop("db_index", None)
            if before.db_index != operation.field.db_index and old_kwargs == new_kwargs:
                found.append(f"{operation.model_name}.{operation.name}")
        operation.state_forwards(app, state)
    return found


def test_no_migration_drops_and_re_adds_a_foreign_key_to_change_its_index():
    """``AlterField`` that only turns a foreign key's index off (or on) drops the constraint and adds it back.

    Adding it back checks every row of the table while holding its lock; on a
    consent ledger of millions of rows, signups wait. Use
    ``SeparateDatabaseAndState`` with ``marketing.schema.drop_indexes``.
    """
    loader = MigrationLoader(None, ignore_no_migrations=True)
    offenders = {}
    for key, migration in sorted(loader.disk_migrations.items()):
        if key[0] in OUR_APPS:
            offenders[key] = _flipped_foreign_key_indexes(key[0], migration.operations,
                                                          loader.project_state(key, at_end=False))
    assert ("subscribers", "0009_partial_indexes") in offenders
    assert not {key: found for key, found in offenders.items() if found}

    # The check itself: the plain AlterField that 0009 replaces is caught.
    plain = migrations.AlterField(
        model_name="consentrecord", name="topic",
        field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=models.deletion.PROTECT,
                                to="preferences.topic"),
    )
    state = loader.project_state(("subscribers", "0008_drop_redundant_indexes"))
    assert _flipped_foreign_key_indexes("subscribers", [plain], state.clone()) == ["consentrecord.topic"]
    hidden = migrations.SeparateDatabaseAndState(database_operations=[plain], state_operations=[plain])
    assert _flipped_foreign_key_indexes("subscribers", [hidden], state.clone()) == ["consentrecord.topic"]


@pytest.mark.django_db(transaction=True)  # CONCURRENTLY cannot run inside the test's transaction
@pytest.mark.parametrize("backwards", [False, True])
def test_the_partial_index_migration_uses_concurrently_on_postgresql(backwards):
    out = io.StringIO()
    call_command("sqlmigrate", "subscribers", "0009", backwards=backwards, stdout=out)
    statements = [line for line in out.getvalue().splitlines() if " INDEX " in line]
    assert len(statements) >= 4, out.getvalue()  # (the foreign keys' indexes are dropped by Python code)
    # SQLite has no CONCURRENTLY, and no other sessions to lock out.
    concurrent = [("CONCURRENTLY" in line) for line in statements]
    assert set(concurrent) == {connection.vendor == "postgresql"}, statements
    assert "BEGIN" not in out.getvalue()  # not one transaction, or CONCURRENTLY would fail


def _index_names(table):
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, table))


@pytest.mark.django_db(transaction=True)
def test_an_index_build_runs_again_after_an_interrupted_migrate():
    """Django marks a non-atomic migration applied only after its last step, so ``migrate`` repeats the steps."""
    operation = AddIndexConcurrently(model_name="subscriber",
                                     index=models.Index(fields=["last_order_at"], name="subscriber_test_rerun"))
    before = MigrationLoader(connection).project_state(("subscribers", "0009_partial_indexes"))
    after = before.clone()
    operation.state_forwards("subscribers", after)
    try:
        for _ in range(2):  # the second run is `migrate` after an interruption that came after this step
            with connection.schema_editor(atomic=False) as editor:
                operation.database_forwards("subscribers", editor, before, after)
        assert "subscriber_test_rerun" in _index_names("subscribers_subscriber")
    finally:
        with connection.schema_editor(atomic=False) as editor:
            operation.database_backwards("subscribers", editor, after, before)
    assert "subscriber_test_rerun" not in _index_names("subscribers_subscriber")
