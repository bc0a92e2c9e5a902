"""`manage.py audit_checkpoint`: sign each audit chain's head into the checkpoint files (run it daily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import checkpoints
from audit.services import chains


class Command(BaseCommand):
    help = (
        "Append a signed checkpoint of each audit chain's head to COMMONROOM_CHECKPOINT_DIR (run daily from "
        "cron). With --generate-key PATH, write a new Ed25519 key pair instead (PATH and PATH.pub)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--generate-key", metavar="PATH", help="Write a new private key to PATH (and PATH.pub).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["generate_key"]:
            path = Path(options["generate_key"])
            try:
                checkpoints.generate_key(path)
            except FileExistsError:
                raise CommandError(f"{path} exists: a checkpoint key is never replaced by accident.") from None
            self.stdout.write(f"wrote the private key to {path} and the public key to {path.with_suffix('.pub')}")
            return
        try:
            written = checkpoints.write_checkpoints(chains())
        except checkpoints.CheckpointError as exc:
            raise CommandError(str(exc)) from exc
        for checkpoint in written:
            self.stdout.write(f"{checkpoint.chain}: checkpoint at position {checkpoint.seq}")
        self.stdout.write(f"wrote {len(written)} checkpoint(s) to {checkpoints.folder()}")
