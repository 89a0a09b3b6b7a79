from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tandem", "0004_attempt_token"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrecord",
            name="trace_context",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
