# Four B-trees per notification instead of seven (docs/performance.md, issue 15): the
# foreign keys lose their own indexes, each column leading one that remains; the unique
# (user, message) becomes (message, user) and (user, room, seq) becomes (room, user, seq).
# The new ones are made before the old ones go.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0012_user_timezone'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='notification',
            constraint=models.UniqueConstraint(fields=('message', 'user'), name='notification_message_user'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['room', 'user', 'seq'], name='notification_room_user_seq'),
        ),
        migrations.RemoveConstraint(
            model_name='notification',
            name='notification_user_message',
        ),
        migrations.RemoveIndex(
            model_name='notification',
            name='notification_user_room_seq',
        ),
        migrations.AlterField(
            model_name='notification',
            name='message',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='chat.message'),
        ),
        migrations.AlterField(
            model_name='notification',
            name='room',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='chat.room'),
        ),
        migrations.AlterField(
            model_name='notification',
            name='user',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to=settings.AUTH_USER_MODEL),
        ),
    ]
