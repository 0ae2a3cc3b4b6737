"""Whether matching's live recommendation lists have caught up with its tables, so that
the rebuild's lists (computed from scratch from the tables) can be compared with them."""

from __future__ import annotations

import asyncpg

from tests.integration.support import RunningPlatform

# Each of matching's request events the pair subscription (`matching-1`) has not applied,
# each participant whose texts wait for vectors, each decision and list queued for the
# worker, each approved one with vectors but no list.
_BEHIND = """
SELECT (SELECT count(*) FROM events e
        WHERE e.event_type ~ '[.]Meeting(Requested|Accepted|Declined|Cancelled|RequestExpired)[.]'
        AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = $1
                        AND i.message_id = '/services/matching#' || e.event_id::text))
     + (SELECT count(*) FROM embedding_queue)
     + (SELECT count(*) FROM list_refresh_queue)
     + (SELECT count(*) FROM list_entry_queue)
     + (SELECT count(*) FROM participants p JOIN participant_vectors v USING (registration_id)
        WHERE p.status = 'approved' AND v.requests = p.requests AND v.offers = p.offers
        AND NOT EXISTS (SELECT 1 FROM recommendation_lists l
                        WHERE l.registration_id = p.registration_id))
"""


async def lists_caught_up(running: RunningPlatform) -> bool:
    conn = await asyncpg.connect(running.dsns["matching"])
    try:
        behind = await conn.fetchval(_BEHIND, f"matching-1{running.group_suffix}")
    finally:
        await conn.close()
    return int(behind) == 0
