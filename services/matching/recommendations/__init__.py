"""Recommendations kept current from registration's events, and read for the API.

Wiring: `HANDLERS` run in the consumer's transaction after the participants
projection (`combine(projection.HANDLERS, ..., recommendations.HANDLERS)`);
they do not rely on that order for the participant concerned (its profile and
status are taken from the event), only for the others.

* A registration (or a profile update with new requests or offers) only queues
  the participant for embedding (`embedding_queue`); the embedding worker
  (`worker`, a background task) embeds due participants in batches outside any
  transaction, stores their sentence vectors (`participant_vectors`) and brings
  the approved ones into the lists. Until its vectors land a participant is in
  no list and has none: its recommendations read as empty with `pending`.
* A profile update of an approved participant updates the stored top-K lists
  incrementally (`recommend.incremental`): the participant's own list, the lists
  that held it, and the lists it now enters. Nothing else of the event is
  recomputed. Approval, rejection, waitlisting or withdrawal only queues the
  participant (`list_entry_queue`); the worker makes the same update in its next
  round (`refresh_due`, a burst at once), by the status the projection then holds.
* `PAIR_HANDLERS` (matching's own events, on `matching.events`): after a
  request between two participants is made or ends, their two lists are
  queued (`list_refresh_queue`) and the worker computes them anew in its next
  round (`refresh_due`), each once however many requests queued it. Reads also
  leave out pending and accepted pairs, so lists never show them even before that.

A row per brokerage event (`recommendation_state`), locked for the
transaction, serialises changes to that event's lists; its token lets the
process reuse the participants it loaded last time (see `cache.States`).

Modules: `store` (profiles, vectors, the event's participants, the stored lists),
`embedding` (the queue and one round's steps), `worker` (the background task),
`cache` (the per-event lock and the participants kept by state token), `handlers`
(incremental updates and the event handlers), `views` (reads for the API). The
names below are the package's interface (bootstrap, the API, tests, benches).
"""

from services.matching.recommendations.cache import States, states, warm_up
from services.matching.recommendations.handlers import (
    BATCH_HANDLERS,
    HANDLERS,
    INLINE_HANDLERS,
    PAIR_BATCH_HANDLERS,
    PAIR_HANDLERS,
    on_decisions,
    on_registered_batch,
    rebuild_event,
    refresh,
)
from services.matching.recommendations.store import (
    ENGAGED_STATUSES,
    MAX_LIMIT,
    MODEL,
    load_participants,
    load_ranker,
    store_vectors,
    stored_vectors,
)
from services.matching.recommendations.views import (
    Subject,
    pending,
    ranked_partners,
    recommendations,
    subject_of,
)
from services.matching.recommendations.worker import (
    Worker,
    drain,
    embed_due,
    recover,
    refresh_due,
)

__all__ = [
    "BATCH_HANDLERS",
    "ENGAGED_STATUSES",
    "HANDLERS",
    "INLINE_HANDLERS",
    "MAX_LIMIT",
    "MODEL",
    "PAIR_BATCH_HANDLERS",
    "PAIR_HANDLERS",
    "States",
    "Subject",
    "Worker",
    "drain",
    "embed_due",
    "load_participants",
    "load_ranker",
    "on_decisions",
    "on_registered_batch",
    "pending",
    "ranked_partners",
    "rebuild_event",
    "recommendations",
    "recover",
    "refresh",
    "refresh_due",
    "states",
    "store_vectors",
    "stored_vectors",
    "subject_of",
    "warm_up",
]
