"""A GIN index for history search (`q`), on PostgreSQL only.

The index is an expression index on to_tsvector('simple', body), the exact expression
selectors._matching() filters on. SQLite has no full-text index here (search there is a
plain case-insensitive match), so the index is created by RunPython, outside the model
state: models.py stays portable and makemigrations sees no change.
"""

from django.db import migrations

INDEX_NAME = "message_body_search"


def _index():
    from django.contrib.postgres.indexes import GinIndex
    from django.contrib.postgres.search import SearchVector

    return GinIndex(SearchVector("body", config="simple"), name=INDEX_NAME)


def add_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(apps.get_model("chat", "Message"), _index())


def remove_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("chat", "Message"), _index())


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_general_room")]

    operations = [migrations.RunPython(add_index, remove_index)]
