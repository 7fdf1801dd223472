"""The production channel layer survives a quiet channel: a receive that waits longer than the Redis
client's read timeout (redis-py 8: 5 s) still gets the next message (redis/redis-py#4091 made it raise
``TimeoutError`` now and then with channels_redis's own 5 s blocking pop)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from mmsite.channel_layer import RedisChannelLayer

pytestmark = pytest.mark.redis


def test_the_blocking_pop_is_shorter_than_the_clients_read_timeout():
    from channels_redis.utils import create_pool

    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    read_timeout = create_pool(layer.hosts[0]).make_connection().socket_timeout  # as the layer's pool makes them
    assert read_timeout is None or layer.brpop_timeout < read_timeout


@pytest.mark.parametrize("specific", [False, True], ids=["named channel", "process-specific channel"])
async def test_a_receive_idle_past_the_read_timeout_still_gets_the_next_message(specific):
    layer = get_channel_layer()
    channel = await layer.new_channel() if specific else "test-idle-receive"
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        await asyncio.sleep(6.5)  # past redis-py's 5 s read timeout, with no message
        assert not receiving.done(), receiving.exception() if receiving.done() else None
        await layer.send(channel, {"type": "hello", "n": 1})
        message = await asyncio.wait_for(receiving, 3)
        assert message == {"type": "hello", "n": 1}
    finally:
        receiving.cancel()
        await layer.flush()
