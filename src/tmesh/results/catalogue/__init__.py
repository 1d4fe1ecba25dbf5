"""Every metric tmesh shows, declared once: `metrics` (what tmesh measures of a run), `server`
(what the server's own `/metrics` says, and what tmesh derives from it for the cache verdict) and
`units` (the units, and the console's and the report's styles of writing values)."""
