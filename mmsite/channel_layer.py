"""The Redis channel layer, with its blocking pop shorter than the Redis client's read timeout.

channels_redis 4.3 waits for a message with ``BZPOPMIN key 5``, and redis-py 8 reads every answer
with a 5 s socket timeout by default (redis/redis-py#4091). On a quiet channel the two timers race:
when the client's fires first, the read raises ``TimeoutError`` in whichever consumer was running the
process's shared receive, and that consumer ends (daphne logs "Exception inside application"); book,
trades and private stream clients, and MM clients on ``/ws/subscribe``, lost their stream now and then.

Raising ``socket_timeout`` instead (10 s, 30 s) made a cancelled receive hang the event loop's
teardown in the WebSocket consumer tests; a shorter blocking pop leaves every other timeout alone.
An idle receive loop wakes every ``brpop_timeout`` seconds instead of 5, which costs nothing.
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):
    #: seconds ``BZPOPMIN`` blocks for; must stay below the client's read timeout (redis-py: 5 s)
    brpop_timeout = 2
