"""Every metric tmesh shows, declared once: `metrics` (what tmesh measures of a run), `sessions`
(the breakdowns of a sessions run, by turn and by idle gap), `server` (what the server's own
`/metrics` says, and what tmesh derives from it for the cache verdict) and `units` (the units, and
the console's and the report's styles of writing values)."""
