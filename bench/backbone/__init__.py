"""Throughput and latency of the event backbone, measured on the local stack in one run.

    .venv/bin/python -m bench.backbone [--events N] [--quick] [--steps 1,2,3,4,5]

Steps (all against the real Kafka on localhost:9092 and PostgreSQL on :5432,
started by `bash deploy/local/infra.sh up`):

  1. raw produce   an idempotent producer (`shared.outbox.create_producer`) sends N
                   CloudEvents records (~500-byte JSON value + ce_* headers) to a
                   fresh 3-partition topic, awaiting every ack;
  2. raw consume   a plain consumer (no group, no DB) reads them back with getmany;
  3. outbox relay  N outbox rows written through `shared.eventstore.append` into a
                   fresh database, then an `OutboxRelay` publishes them; timed from
                   the relay's start until every row is marked published;
  4. inbox         an `InboxConsumer` applies those N events to a counter
                   projection (one upsert per event), timed from partition
                   assignment until the projection has counted all N;
     4b.           the same with `shared.inbox`'s batch handlers
                   (`Subscription.batch_handlers`: one statement per run of
                   same-type events);
  5. end to end    the registration and matching services as subprocesses on
                   fresh databases; registrations POSTed open-loop at a steady
                   rate, in phases (`--phases 500:httpx,150:raw`: rate and load
                   client); per command, the time from sending the request until
                   matching's transaction that applied the event has committed
                   (stamped by `bench._service` after each batch), with the stages
                   in between (the inbox claim, `inbox.processed_at`, among them);
                   then each `--whatif` configuration (e.g. relay linger.ms 5) on
                   fresh services at the lowest rate.

Modules: `common`, `resources`, `pipeline` (steps 1-4), `load`, `end_to_end`
(step 5), `report`, `cli`.

The services run through `bench._service`, which renames their events topic to one
of the run's own and stamps matching's commits (see there). Everything the run
creates (databases `bench_<hex>*`, topics `bench<hex>.*` and `b<hex>.events`,
consumer groups, service processes) is removed at the end, also on failure or Ctrl-C. Results: a
table on stdout and var/bench/backbone.json; service logs in var/bench/logs/.
"""
