"""Intake records that last: the database, the store the session and the staff API use, retention."""
