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

# Sent inside the provisioning transaction when classes or cohorts changed in a way that can change
# their rooms' state (archived, graduated, edited), with `class_ids` and `cohort_ids`: sets of ids.
owners_changed = Signal()

# Sent inside the provisioning transaction when an adult was placed in a room by hand (an admin form
# or a provisioning action, not the roster import), with `school_id`, `actor` (who did it), `person`
# (the adult) and `place` (a sentence naming the class or cohort). How a bad actor would get in, so
# the school's safeguarding lead is told (moderation/ listens).
adult_added_by_hand = Signal()

# Sent inside the transaction that changed a school's settings, with `school_id`: its rooms' states
# and its sockets' clocks (quiet hours, time zone) may have changed.
school_changed = Signal()
