"""`manage.py signing rotate-master-key`: re-wrap every data key under a new master key, with progress."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.signing import services


class Command(BaseCommand):
    help = "Signing key custody operations."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        rotate = sub.add_parser("rotate-master-key", help="Make a new master key current and re-wrap every data key.")
        rotate.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, action, batch_size, **options):
        def progress(done: int, total: int) -> None:
            self.stdout.write(f"re-wrapped {done}/{total} data keys")
            self.stdout.flush()

        result = services.signing_master_key_rotate(progress=progress, batch_size=batch_size)
        self.stdout.write(
            f"master key {result['master_key_id']} is current: {result['rewrapped']} data keys re-wrapped, "
            f"{result['failed']} failed, retired {', '.join(result['retired']) or 'none'}"
        )
        if result["failed"]:
            raise CommandError(f"{result['failed']} data keys could not be re-wrapped (see the log); their master keys were kept")
