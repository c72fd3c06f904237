"""The schema comes from the migrations, on SQLite and on PostgreSQL alike.

``flask db upgrade`` builds every table from an empty database, the models and
the migrations agree (autogenerate would find nothing to add), and the
migrations go down to nothing and up again.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from portal.config import PROJECT_ROOT
from tests.support.apps import make_app

FLASK = str(Path(sys.executable).parent / "flask")


@pytest.fixture
def empty_database_url(db_kind, request, tmp_path) -> str:
    """A database with nothing in it, of the kind the suite runs on."""
    if db_kind == "postgresql":
        server = request.getfixturevalue("postgres_server")
        return server.create_database("portal_migrations_test")
    return f"sqlite:///{tmp_path / 'empty.db'}"


def _schema_differences(app) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from portal.extensions import db

    options = dict(app.extensions["migrate"].configure_args)
    options.pop("process_revision_directives", None)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts=options)
        return compare_metadata(context, db.metadata)


def _tables(app) -> set[str]:
    from portal.extensions import db

    return set(inspect(db.engine).get_table_names())


def test_flask_db_upgrade_from_empty_builds_the_models_schema(
    empty_database_url, db_kind, redis_server, tmp_path
):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": empty_database_url,
        "REDIS_URL": redis_server.url,
        "SECRET_KEY": "migrations-test-" + "k" * 32,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    result = subprocess.run([FLASK, "--app", "wsgi", "db", "upgrade"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> " in result.stderr

    app = make_app(empty_database_url, redis_server.url, tmp_path / "instance")
    with app.app_context():
        from portal.extensions import db

        assert db.engine.dialect.name == db_kind
        model_tables = set(db.metadata.tables)
        assert {"staff_user", "client", "contact", "auth_token", "business", "event", "delivery"} <= model_tables
        assert _tables(app) == model_tables | {"alembic_version"}

        assert _schema_differences(app) == []
        db.engine.dispose()


def test_migrations_go_down_to_base_and_up_again(empty_database_url, db_kind, redis_server, tmp_path):
    from flask_migrate import downgrade, upgrade

    app = make_app(empty_database_url, redis_server.url, tmp_path / "instance")
    with app.app_context():
        from portal.extensions import db

        model_tables = set(db.metadata.tables)
        upgrade()
        assert _tables(app) == model_tables | {"alembic_version"}

        downgrade(revision="base")
        assert _tables(app) <= {"alembic_version"}
        # The comparison is not vacuous: on an empty schema it wants every table back.
        missing = {diff[1].name for diff in _schema_differences(app) if diff[0] == "add_table"}
        assert missing == model_tables

        upgrade()
        assert _tables(app) == model_tables | {"alembic_version"}
        assert _schema_differences(app) == []
        db.engine.dispose()
