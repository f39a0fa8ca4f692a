"""What each person chose for themselves: for now the theme (system, light or
dark). Kept in the database per user, and in the session from sign-in on, so
that drawing a page costs no query for it."""
