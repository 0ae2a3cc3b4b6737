"""`make bench-event SIZE=hannover|bremen|bioeurope`: a whole event through the running platform.

Modules: `workload` (the sizes and what is sent), `api` (the HTTP client, every
command's times), `driver` (the phases), `stub` (the baseline's do-nothing server),
`probe` (waits, latencies and convergence read from the services' own records),
`cpu` (CPU seconds per part from /proc), `report` (the table), `cli`.
"""
