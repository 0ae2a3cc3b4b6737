"""The web portal (port 8005): server-rendered pages for participants and organisers.

It owns no data: every page is one or more calls to the services' public HTTP APIs with
the signed-in user's API key, which is kept encrypted in an HttpOnly session cookie."""
