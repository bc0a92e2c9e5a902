"""Signals that provisioning sends, so that the layers above can follow the roster without classes/ importing them."""

from django.dispatch import Signal

# Sent inside the provisioning transaction after classes or cohorts of some schools were created or
# changed (an import, a year end, an admin form), with `school_ids`: a set of school ids.
roster_changed = Signal()
