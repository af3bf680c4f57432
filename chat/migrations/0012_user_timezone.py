from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0011_outgoing_webhooks'),
    ]

    operations = [
        migrations.AddField(
            model_name='userpreferences',
            name='timezone',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
    ]
