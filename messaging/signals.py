"""Signals that messaging sends, so that the layers above (moderation/) can act without messaging/ importing them."""

from django.dispatch import Signal

# Sent inside the reporting transaction when someone reports a message they can see, with `message`,
# `room`, `reporter`, `category` (a ReportCategory value) and `note`.
message_reported = Signal()

# Sent inside the sending (or editing) transaction when screening flagged or held a message, with
# `message`, `room` and `verdict` (a messaging.services.Verdict).
message_screened = Signal()
