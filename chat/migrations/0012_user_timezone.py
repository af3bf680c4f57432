from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0010_connect_tokens'),
    ]

    operations = [
        migrations.AddField(
            model_name='userpreferences',
            name='timezone',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
    ]
