"""`python manage.py consume_events`: apply Step Functions' status-change events
from SQS to the cache, until SIGINT or SIGTERM (see executions/sync/consumer.py)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import aws
from executions.sync import consumer


class Command(BaseCommand):
    help = (
        "Long-poll the SQS queue(s) of SFNUI_EVENTS_QUEUE_URL and apply each Step Functions "
        "status change to the cache. Killed at any point, it loses nothing: a message is "
        "deleted only once its change is committed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            metavar="URL",
            help="an SQS queue URL (repeatable); default: SFNUI_EVENTS_QUEUE_URL",
        )
        parser.add_argument(
            "--once", action="store_true", help="one receive per queue, then exit (for scripts)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        urls: list[str] = options["queue"] or list(settings.SFNUI_EVENTS_QUEUE_URL)
        if not urls:
            self.stdout.write(
                "Events are off: SFNUI_EVENTS_QUEUE_URL is not set, so there is nothing to "
                "consume (the sync polls). See README, Events."
            )
            return
        for url in urls:
            try:
                aws.queue(url)
            except aws.AwsError as exc:
                raise CommandError(exc.message) from None
        if options["once"]:
            for url in urls:
                batch = consumer.Consumer(url).consume_once(wait=1)
                self.stdout.write(f"{url}: {batch.received} received, {dict(batch.outcomes)}")
            return
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.stdout.write(f"consuming events from {', '.join(urls)}", ending="\n")
        self.stdout.flush()
        consumer.run(urls, stop)
