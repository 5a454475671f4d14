import shutil
from pathlib import Path

from django.conf import settings
from django.db import migrations, models

import apps.content.models


def _move_files(apps, source_root, target_root):
    """Move each media row's file between roots; a file already moved, or never stored, is left alone."""
    Media = apps.get_model("content", "Media")
    source, target = Path(source_root), Path(target_root)
    for name in Media.objects.exclude(file="").values_list("file", flat=True).iterator():
        old, new = source / name, target / name
        if old.is_file() and not new.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(old, new)


def to_private_root(apps, schema_editor):
    # Files stored before this change sit under MEDIA_ROOT, which the proxy serves to anyone.
    _move_files(apps, settings.MEDIA_ROOT, settings.PRIVATE_MEDIA_ROOT)


def to_public_root(apps, schema_editor):
    _move_files(apps, settings.PRIVATE_MEDIA_ROOT, settings.MEDIA_ROOT)


class Migration(migrations.Migration):

    dependencies = [
        ('content', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='media',
            name='file',
            field=models.FileField(storage=apps.content.models.private_media_storage, upload_to='media/%Y/%m/'),
        ),
        migrations.RunPython(to_private_root, to_public_root),
    ]
