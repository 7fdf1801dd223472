"""OddsPapi v5 WebSocket feed: the wire protocol, an asyncio client, a local server and replays.

Pure of Django, like the pricing maths: services wrap these pieces with persistence.

* :mod:`trading.feed.protocol` frames, ``parse_frame`` (JSON and msgpack), ``build_login``, metrics
* :mod:`trading.feed.client` ``FeedClient``: login, resume from the last entry ids, snapshot when
  the server refuses to resume, reconnect with exponential backoff and jitter
* :mod:`trading.feed.server` ``FeedServer``: a local gateway speaking the same protocol, fed from a
  replay file or by hand (tests), with a resume window and a way to drop connections
* :mod:`trading.feed.replay` the replay file format (JSON lines, relative timestamps)

The WebSocket layer is the ``websockets`` library, on both sides.

The protocol as implemented is described in ``docs/odds-feed.md``.
"""
