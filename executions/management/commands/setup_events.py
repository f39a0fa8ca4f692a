"""`python manage.py setup_events`: route Step Functions' status-change events to
one SQS queue, against the configured endpoint (the demo, the tests, or an AWS
account), and print the SFNUI_EVENTS_QUEUE_URL to set.

What it creates is what deploy/cloudformation/sfnui-events.yaml and
sfnui-events-forwarder.yaml create, and it is safe to run again:

- in the home account and region (the first configured identity's first
  region): the queue, a rule on the default bus with the Step Functions
  pattern whose target is the queue, and a queue policy that lets only that
  rule send to it;
- for every other account and region configured (SFNUI_ACCOUNTS): a rule on
  that default bus forwarding the same events to the home default bus, and
  on the home bus a permission for that account to put them.

In real AWS a rule whose target is another account's or region's bus needs a
role that EventBridge assumes (--forwarder-role): the CloudFormation
forwarder template creates one per account; use it (a StackSet) there.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import aws

PATTERN = json.dumps(
    {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}
)
QUEUE_ATTRIBUTES = {
    # Longer than a batch can take to apply: a message is handed out again
    # only when its consumer died.
    "VisibilityTimeout": "60",
    "MessageRetentionPeriod": str(4 * 24 * 3600),
    "ReceiveMessageWaitTimeSeconds": "20",
    "SqsManagedSseEnabled": "true",
}


class Command(BaseCommand):
    help = (
        "Create the SQS queue and EventBridge rules that bring Step Functions' status-change "
        "events to sfnui, for every configured account and region; prints the "
        "SFNUI_EVENTS_QUEUE_URL to set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue-name", default="sfnui-events")
        parser.add_argument("--rule-name", default="sfnui-execution-status-change")
        parser.add_argument(
            "--forwarder-role",
            default="",
            metavar="ARN",
            help="the role EventBridge assumes to forward events from another account or "
            "region to the home bus; {account} is replaced by the account id "
            "(e.g. arn:aws:iam::{account}:role/sfnui-events-forwarder)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            url = self._setup(
                options["queue_name"], options["rule_name"], options["forwarder_role"]
            )
        except aws.AwsError as exc:
            where = f" ({exc.operation})" if exc.operation else ""
            raise CommandError(f"could not set up the events{where}: {exc.message}") from None
        self.stdout.write(f"SFNUI_EVENTS_QUEUE_URL={url}")

    def _setup(self, queue_name: str, rule_name: str, forwarder_role: str) -> str:
        pairs = aws.scheduled()
        home, home_region = pairs[0]
        home_account = aws.caller_account(home, home_region)
        url = aws.create_queue(home, home_region, queue_name, QUEUE_ATTRIBUTES)
        queue_arn = f"arn:aws:sqs:{home_region}:{home_account}:{queue_name}"
        rule_arn = aws.put_rule(
            home, home_region, rule_name, PATTERN, "Step Functions status changes to sfnui"
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "StepFunctionsEventsFromTheRule",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    # Only this rule: nobody else's rule can fill the queue.
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
        aws.create_queue(home, home_region, queue_name, {"Policy": json.dumps(policy)})
        aws.put_target(home, home_region, rule_name, "sfnui-queue", queue_arn)
        self.stdout.write(f"{home.label}, {home_region}: queue {url}, rule {rule_arn}")

        home_bus = f"arn:aws:events:{home_region}:{home_account}:event-bus/default"
        allowed: set[str] = {home_account}
        for t, region in pairs:
            if (t.key, region) == (home.key, home_region):
                continue
            account = t.key if t.role_arn else aws.caller_account(t, region)
            if account not in allowed:
                try:
                    aws.allow_put_events(home, home_region, account)
                except aws.AwsError as exc:
                    if "exist" not in exc.message.lower() and "Conflict" not in exc.code:
                        raise
                allowed.add(account)
            role = forwarder_role.replace("{account}", account) if forwarder_role else ""
            if not role and not settings.SFNUI_AWS_ENDPOINT_URL:
                raise CommandError(
                    f"forwarding from {account} in {region} to the home bus needs a role for "
                    "EventBridge: pass --forwarder-role, or deploy "
                    "deploy/cloudformation/sfnui-events-forwarder.yaml there"
                )
            forwarder_arn = aws.put_rule(
                t, region, rule_name, PATTERN, "Step Functions status changes to sfnui's home bus"
            )
            aws.put_target(t, region, rule_name, "sfnui-home-bus", home_bus, role)
            self.stdout.write(f"{t.label}, {region}: rule {forwarder_arn} -> {home_bus}")
        return url
