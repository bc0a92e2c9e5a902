"""Full-text search over message bodies on PostgreSQL: a GIN index on the English text-search vector
(the expression moderation.review searches with). SQLite has no such index; search falls back there."""

from typing import Any

from django.db import migrations

INDEX = "message_body_search"
EXPRESSION = "to_tsvector('english'::regconfig, COALESCE(body, ''))"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_message USING gin ({EXPRESSION})")


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0002_messages_and_room_state")]
    operations = [migrations.RunPython(create, drop)]
