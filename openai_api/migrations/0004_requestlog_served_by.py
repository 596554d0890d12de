from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("openai_api", "0003_stored_responses"),
    ]

    operations = [
        migrations.AddField(
            model_name="requestlog",
            name="served_by",
            field=models.CharField(
                blank=True, help_text="the remote node that served it", max_length=300, verbose_name="node"
            ),
        ),
    ]
