"""Fill Message.html and Message.mentions for the messages stored before formatting existed.

Batches of 1,000 by id, so neither memory nor one transaction grows with the table. A mention
is rendered as the service renders it: a name of an active user who can see the room (any
user in a public room, a member in a private one). Reversing is a no-op: 0005's reversal drops
the columns.
"""

from django.conf import settings
from django.db import migrations

from chat.formatting import parse_markdown

BATCH = 1000
WRITE_BATCH = 100


def fill_html(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    Membership = apps.get_model("chat", "Membership")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    last = 0
    while True:
        batch = list(
            Message.objects.filter(pk__gt=last).select_related("room").order_by("pk")[:BATCH]
        )
        if not batch:
            return
        last = batch[-1].pk
        parsed = {m.pk: parse_markdown(m.body) for m in batch}
        names = {name for p in parsed.values() for name in p.mentions}
        users = dict(User.objects.filter(username__in=names, is_active=True).values_list("username", "pk")) if names else {}
        private_ids = {m.room_id for m in batch if m.room.private and parsed[m.pk].mentions}
        members = set(
            Membership.objects.filter(room_id__in=private_ids, user_id__in=users.values()).values_list("room_id", "user_id")
        ) if private_ids and users else set()
        for message in batch:
            candidates = parsed[message.pk].mentions
            seen = [
                n for n in candidates
                if n in users and (not message.room.private or (message.room_id, users[n]) in members)
            ]
            message.html = parsed[message.pk].html(mentions=seen)
            message.mentions = seen
        # UPDATE … CASE grows quadratically with its rows on PostgreSQL: write in tens.
        Message.objects.bulk_update(batch, ["html", "mentions"], batch_size=WRITE_BATCH)


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_message_html_replies_reactions")]

    operations = [migrations.RunPython(fill_html, migrations.RunPython.noop)]
