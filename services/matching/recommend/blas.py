"""One BLAS thread for the recommender's numpy work.

OpenBLAS splits even small matrix products over every core and its threads
spin while they wait. On a 2-core machine shared with Kafka, PostgreSQL and
the other services that is slower, not faster: a profile embedded in 80-100 ms
instead of 15-25 ms, all lists of 5,000 participants in 5 s instead of under 3
(measured in `bench.recommendations` with the machine busy). The limit holds
only while the recommender computes (threadpoolctl sets it and puts it back).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, ParamSpec, TypeVar

from threadpoolctl import ThreadpoolController

P = ParamSpec("P")
R = TypeVar("R")


@lru_cache(maxsize=1)
def _controller() -> Any:
    return ThreadpoolController()


def single_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` with the BLAS libraries limited to one thread."""

    @wraps(function)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with _controller().limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited
