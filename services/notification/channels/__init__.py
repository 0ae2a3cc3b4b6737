"""Ways out of the service: email (SMTP), calendar entries (iCalendar), webhooks (HTTP)."""
