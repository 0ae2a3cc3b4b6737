"""Reporting: the read side (port 8000). Projections of every service's events, attendance
and feedback as its own events, and the event report as JSON, Markdown and HTML."""
