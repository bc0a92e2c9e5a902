"""Signals that provisioning sends, so that the layers above can follow the roster without classes/ importing them."""

from django.dispatch import Signal

# Sent inside the provisioning transaction after classes or cohorts of some schools were created or
# changed (an import, a year end, an admin form), with `school_ids`: a set of school ids.
roster_changed = Signal()

# Sent inside the provisioning transaction when people's enrollments or cohort memberships changed,
# with `user_ids`: a set of user ids. Their open sockets re-read the rooms they may read.
membership_changed = Signal()

# Sent inside the transaction that ends people's sessions, with `user_ids`: they were disabled or
# suspended, or given a new password. Their open sockets close.
sessions_ended = Signal()
