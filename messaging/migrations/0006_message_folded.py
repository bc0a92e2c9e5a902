"""Messages keep their body folded as screening reads it (`Message.folded`), for search: the column, the
folded text of every message already saved, and on PostgreSQL a GIN index of its words."""

from typing import Any

from django.conf import settings
from django.db import migrations, models
from django.utils.module_loading import import_string

INDEX = "message_folded_search"
EXPRESSION = "to_tsvector('simple'::regconfig, COALESCE(folded, ''))"
BATCH = 2000


def fold_saved(apps: Any, schema_editor: Any) -> None:
    path = settings.COMMONROOM_SEARCH_FOLDER
    if not path:
        return
    folder = import_string(path)
    Message = apps.get_model("messaging", "Message")
    last = 0
    while True:
        batch = list(Message._base_manager.filter(pk__gt=last).order_by("pk").only("pk", "body")[:BATCH])
        if not batch:
            break
        for message in batch:
            message.folded = folder(message.body)
        Message._base_manager.bulk_update(batch, ["folded"])
        last = batch[-1].pk


def create_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON messaging_message USING gin ({EXPRESSION})")


def drop_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("messaging", "0005_message_author_note")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="folded",
            field=models.TextField(
                blank=True,
                default="",
                help_text="The body as search reads it (COMMONROOM_SEARCH_FOLDER): disguises undone.",
            ),
        ),
        migrations.RunPython(fold_saved, migrations.RunPython.noop),
        migrations.RunPython(create_index, drop_index),
    ]
