"""The migrations build exactly the schema the models describe, on both backends."""

from twin.migrate import current_revision, schema_drift


def test_migrated_database_matches_the_models(store):
    assert current_revision(store.engine) is not None
    assert schema_drift(store.engine) == []


def test_migrating_twice_is_harmless(store):
    before = current_revision(store.engine)
    store.migrate()
    assert current_revision(store.engine) == before
