"""manage.py cleanup_files: remove unposted uploads and old deleted messages' files (chat/files/cleanup.py)."""

from django.core.management.base import BaseCommand

from chat.files.cleanup import UNPOSTED_HOURS, files_cleanup


class Command(BaseCommand):
    help = (
        f"Remove uploads never posted within {UNPOSTED_HOURS} hours, and the files of messages deleted "
        "more than CHAT_DELETED_FILE_DAYS days ago. Run it every hour (deploy/systemd/chat-cleanup.timer)."
    )

    def handle(self, *args, **options):
        removed = files_cleanup()
        self.stdout.write(
            f"Removed {removed.unposted} unposted uploads and {removed.deleted_messages} files of deleted messages."
        )
