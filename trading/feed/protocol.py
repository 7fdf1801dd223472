"""The OddsPapi v5 WebSocket protocol: frames, parsing and the login message.

Wire format (docs.oddspapi.io, "WebSocket"; details and our assumptions in docs/odds-feed.md):

* The client's first message is ``{"type": "login", "apiKey": ..., "channels": [...],
  "sportIds": [...], "tournamentIds": [...], "fixtureIds": [...], "bookmakers": [...],
  "receiveType": "json" | "binary", "serverEpoch": ..., "lastSeenId": {"<channel>": "<entryId>"}}``.
* Control frames: ``login_ok`` (with ``receiveType``, ``access`` and a ``resume`` block:
  ``serverEpoch``, ``resumeWindowMs``, ``replayChannels``, ``serverEntryIds``), ``error``,
  ``snapshot_required`` (``reason``, ``channels``, ``serverEpoch``, ``resumeWindowMs``,
  ``serverEntryIds``), ``resume_complete`` (``serverEpoch``) and ``reconnect`` (``reason``).
* Stream frames: ``{"channel": "odds" | "fixtures" | "scores" | ..., "type": "UPDATE",
  "payload": {...}, "ts": <ms>, "entryId": "<ts_ms>-<seq>"}``.
* ``receiveType: "binary"``: stream frames arrive as MessagePack in binary WebSocket frames;
  control frames stay JSON text. :func:`parse_frame` accepts str (JSON), bytes holding JSON, and
  bytes holding MessagePack.

:func:`parse_frame` never raises on bad input: a frame that cannot be decoded or lacks what its
type requires is *malformed*, a well-formed frame of a type or channel we do not handle is
*unknown*; both return ``None``, are counted in :class:`FeedMetrics` and logged (the first few,
then one in a thousand, so a flood cannot fill the disk). Inside an odds frame one bad entry is
skipped and counted without losing the others. Prices and limits are ``Decimal`` (JSON numbers
are read as ``Decimal`` directly, MessagePack floats via their shortest ``repr``); whether odds are
sane enough to quote from is the pricing module's decision, not the parser's.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import msgpack

from trading.pricing import to_decimal

log = logging.getLogger(__name__)

# Channels we parse into typed frames. The gateway has more (bookmakers, futures, currencies,
# stats, events, injuries, lineups); frames of those are counted as unknown and skipped.
ODDS = "odds"
FIXTURES = "fixtures"
SCORES = "scores"
KNOWN_CHANNELS = (FIXTURES, SCORES, ODDS)
DEFAULT_CHANNELS = (FIXTURES, SCORES, ODDS)

RECEIVE_JSON = "json"
RECEIVE_BINARY = "binary"

# Decode failures we expect from hostile or broken input (msgpack's errors are ValueErrors too,
# apart from its base UnpackException).
_DECODE_ERRORS = (ValueError, TypeError, RecursionError, msgpack.UnpackException)
# Structural failures while reading a decoded frame.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, InvalidOperation, OverflowError)


# --- metrics ------------------------------------------------------------------------------------


@dataclass
class FeedMetrics:
    """Counters of one feed connection (or of a benchmark run). Plain ints: the feed runs on one
    event loop, and whoever exports metrics reads :meth:`as_dict`."""

    frames: int = 0
    malformed: int = 0
    unknown: int = 0
    bad_entries: int = 0
    duplicates: int = 0
    connects: int = 0
    reconnects: int = 0
    resumes: int = 0
    snapshots: int = 0
    login_errors: int = 0
    by_kind: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "malformed": self.malformed,
            "unknown": self.unknown,
            "badEntries": self.bad_entries,
            "duplicates": self.duplicates,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "resumes": self.resumes,
            "snapshots": self.snapshots,
            "loginErrors": self.login_errors,
            "byKind": dict(self.by_kind),
        }


def _should_log(count: int) -> bool:
    return count <= 20 or count % 1000 == 0


def _sample(data: str | bytes) -> str:
    return repr(data[:200])


def _malformed(metrics: FeedMetrics | None, data: str | bytes, why: str) -> None:
    count = 1
    if metrics is not None:
        metrics.malformed += 1
        count = metrics.malformed
    if _should_log(count):
        log.warning("odds feed: malformed frame skipped (%s, %d so far): %s", why, count, _sample(data))


def _unknown(metrics: FeedMetrics | None, data: str | bytes, what: str) -> None:
    count = 1
    if metrics is not None:
        metrics.unknown += 1
        count = metrics.unknown
    if _should_log(count):
        log.info("odds feed: unknown frame skipped (%s, %d so far): %s", what, count, _sample(data))


def _bad_entry(metrics: FeedMetrics | None, fixture_id: str, key: object, why: str) -> None:
    count = 1
    if metrics is not None:
        metrics.bad_entries += 1
        count = metrics.bad_entries
    if _should_log(count):
        log.warning("odds feed: odds entry %r of fixture %s skipped (%s, %d so far)", key, fixture_id, why, count)


# --- entry ids ----------------------------------------------------------------------------------


def parse_entry_id(entry_id: object) -> tuple[int, int] | None:
    """``"<ts_ms>-<seq>"`` -> ``(ts_ms, seq)``, comparable in stream order; None if malformed."""
    if not isinstance(entry_id, str):
        return None
    ts, sep, seq = entry_id.partition("-")
    if not sep or not ts.isdigit() or not seq.isdigit():
        return None
    return int(ts), int(seq)


def format_entry_id(ts_ms: int, seq: int) -> str:
    return f"{ts_ms}-{seq}"


# --- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeInfo:
    server_epoch: str
    resume_window_ms: int | None
    replay_channels: tuple[str, ...]
    server_entry_ids: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LoginOk:
    receive_type: str
    access: Mapping[str, Any]
    resume: ResumeInfo | None
    kind: str = "login_ok"


@dataclass(frozen=True, slots=True)
class FeedError:
    code: str
    message: str
    kind: str = "error"


@dataclass(frozen=True, slots=True)
class SnapshotRequired:
    reason: str
    channels: tuple[str, ...]
    server_epoch: str | None
    resume_window_ms: int | None
    server_entry_ids: Mapping[str, str]
    kind: str = "snapshot_required"


@dataclass(frozen=True, slots=True)
class ResumeComplete:
    server_epoch: str | None
    kind: str = "resume_complete"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The gateway asks clients to reconnect (a deploy); it keeps streaming for a short grace
    period, then closes."""

    reason: str
    kind: str = "reconnect"


class OddsEntry(NamedTuple):
    """One price for one outcome at one bookmaker (the gateway's ``oddsId``). An immutable
    record; a named tuple rather than a frozen dataclass because it is built once per tick and a
    named tuple is several times cheaper to build."""

    odds_id: str
    fixture_id: str
    bookmaker: str
    market_id: int
    outcome_id: int
    player_id: int
    price: Decimal
    limit: Decimal | None
    active: bool
    market_active: bool | None
    main_line: bool | None
    changed_at: int | None
    bookmaker_changed_at: int | None

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.fixture_id, self.bookmaker, self.outcome_id, self.player_id)


@dataclass(frozen=True, slots=True)
class OddsUpdate:
    entry_id: str | None
    ts: int | None
    fixture_id: str
    entries: tuple[OddsEntry, ...]
    payload: Mapping[str, Any]
    channel: str = ODDS
    kind: str = ODDS


@dataclass(frozen=True, slots=True)
class FixtureUpdate:
    entry_id: str | None
    ts: int | None
    fixture_id: str
    sport_id: int | None
    sport_name: str | None
    tournament_id: int | None
    tournament_name: str | None
    category_name: str | None
    participant1_id: int | None
    participant1_name: str | None
    participant2_id: int | None
    participant2_name: str | None
    start_time: int | None  # epoch seconds, as the gateway sends it
    live: bool | None
    status_id: int | None
    status_name: str | None
    payload: Mapping[str, Any]
    channel: str = FIXTURES
    kind: str = FIXTURES


@dataclass(frozen=True, slots=True)
class PeriodScore:
    period: str
    participant1_score: int | None
    participant2_score: int | None
    updated_at: str | None


@dataclass(frozen=True, slots=True)
class ScoreUpdate:
    entry_id: str | None
    ts: int | None
    fixture_id: str
    scores: Mapping[str, PeriodScore]
    payload: Mapping[str, Any]
    channel: str = SCORES
    kind: str = SCORES

    @property
    def result(self) -> PeriodScore | None:
        return self.scores.get("result")


ControlFrame = LoginOk | FeedError | SnapshotRequired | ResumeComplete | Reconnect
StreamFrame = OddsUpdate | FixtureUpdate | ScoreUpdate
Frame = ControlFrame | StreamFrame


# --- decoding -----------------------------------------------------------------------------------


_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal)  # one decoder, not one per frame


def decode(data: str | bytes | bytearray | memoryview) -> Any:
    """Raw frame -> Python object. JSON numbers with a fraction become ``Decimal`` (and
    ``NaN``/``Infinity`` become non-finite ``Decimal``s, which pricing refuses)."""
    if isinstance(data, str):
        return _JSON.decode(data)
    raw = bytes(data)
    head = raw[:1]
    if head in (b"{", b"[", b" ", b"\n", b"\r", b"\t"):
        return _JSON.decode(raw.decode("utf-8"))
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def parse_frame(data: str | bytes | bytearray | memoryview, metrics: FeedMetrics | None = None) -> Frame | None:
    """Parse one WebSocket message. Returns None (counted and logged) for malformed or unknown
    frames; never raises on bad input."""
    try:
        obj = decode(data)
    except _DECODE_ERRORS as exc:
        _malformed(metrics, data, f"undecodable: {type(exc).__name__}")
        return None
    if not isinstance(obj, dict):
        _malformed(metrics, data, f"not an object: {type(obj).__name__}")
        return None
    try:
        frame = frame_from_obj(obj, metrics)
    except _SHAPE_ERRORS as exc:
        _malformed(metrics, data, f"{type(exc).__name__}: {exc}")
        return None
    if frame is None:
        _unknown(metrics, data, f"type={obj.get('type')!r} channel={obj.get('channel')!r}")
        return None
    if metrics is not None:
        metrics.frames += 1
        metrics.by_kind[frame.kind] += 1
    return frame


def frame_from_obj(obj: Mapping[str, Any], metrics: FeedMetrics | None = None) -> Frame | None:
    """A decoded frame object -> typed frame. None for an unknown (well-formed) frame; raises one
    of the shape errors when a known frame lacks what it must carry."""
    channel = obj.get("channel")
    if channel is not None:
        if obj.get("type") != "UPDATE":
            return None
        if channel == ODDS:
            return _odds(obj, metrics)
        if channel == FIXTURES:
            return _fixture(obj)
        if channel == SCORES:
            return _scores(obj)
        return None
    kind = obj.get("type")
    if kind == "login_ok":
        return _login_ok(obj)
    if kind == "snapshot_required":
        return SnapshotRequired(
            reason=_opt_str(obj.get("reason")) or "unspecified",
            channels=_str_tuple(obj.get("channels")),
            server_epoch=_opt_str(obj.get("serverEpoch")),
            resume_window_ms=_opt_int(obj.get("resumeWindowMs")),
            server_entry_ids=_str_map(obj.get("serverEntryIds")),
        )
    if kind == "resume_complete":
        return ResumeComplete(server_epoch=_opt_str(obj.get("serverEpoch")))
    if kind == "error":
        return FeedError(
            code=_opt_str(obj.get("code")) or _opt_str(obj.get("error")) or "error",
            message=_opt_str(obj.get("message")) or _opt_str(obj.get("reason")) or "",
        )
    if kind == "reconnect":
        return Reconnect(reason=_opt_str(obj.get("reason")) or "unspecified")
    return None


# --- field readers (raise on a wrong type, return None for an absent optional field) ------------


def _req_str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _req_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"{name} must be an integer")


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _opt_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _number(value: Any) -> Decimal | None:
    """A price or limit as sent: a JSON/msgpack number (a number sent as a string is malformed)."""
    return None if isinstance(value, str) else to_decimal(value)


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _stream_head(obj: Mapping[str, Any]) -> tuple[str | None, int | None, Mapping[str, Any], str]:
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise TypeError("payload must be an object")
    entry_id = obj.get("entryId")
    if entry_id is not None and parse_entry_id(entry_id) is None:
        raise ValueError(f"bad entryId {entry_id!r}")
    return entry_id, _opt_int(obj.get("ts")), payload, _req_str(payload.get("fixtureId"), "fixtureId")


# --- control frames -----------------------------------------------------------------------------


def _login_ok(obj: Mapping[str, Any]) -> LoginOk:
    resume = obj.get("resume")
    info = None
    if isinstance(resume, dict) and isinstance(resume.get("serverEpoch"), str):
        info = ResumeInfo(
            server_epoch=resume["serverEpoch"],
            resume_window_ms=_opt_int(resume.get("resumeWindowMs")),
            replay_channels=_str_tuple(resume.get("replayChannels")),
            server_entry_ids=_str_map(resume.get("serverEntryIds")),
        )
    access = obj.get("access")
    return LoginOk(
        receive_type=_opt_str(obj.get("receiveType")) or RECEIVE_JSON,
        access=access if isinstance(access, dict) else {},
        resume=info,
    )


# --- stream frames ------------------------------------------------------------------------------


def _odds(obj: Mapping[str, Any], metrics: FeedMetrics | None) -> OddsUpdate:
    """``payload.odds`` (or ``payload.bookmakers``) is keyed by bookmaker, then by ``oddsId``
    (``<fixtureId>:<bookmaker>:<outcomeId>:<playerId>``); a flat ``{oddsId: outcome}`` map whose
    outcomes name their bookmaker is read too."""
    entry_id, ts, payload, fixture_id = _stream_head(obj)
    groups = payload.get("odds")
    if groups is None:
        groups = payload.get("bookmakers")
    if not isinstance(groups, dict):
        raise TypeError("odds payload must carry an object keyed by bookmaker")
    entries: list[OddsEntry] = []
    for key, group in groups.items():
        if isinstance(group, dict) and "outcomeId" in group:  # flat: {oddsId: outcome}
            _add_entry(entries, metrics, fixture_id, None, key, group)
        elif isinstance(group, dict):
            for odds_id, outcome in group.items():
                _add_entry(entries, metrics, fixture_id, key, odds_id, outcome)
        else:
            _bad_entry(metrics, fixture_id, key, "bookmaker group is not an object")
    return OddsUpdate(entry_id=entry_id, ts=ts, fixture_id=fixture_id, entries=tuple(entries), payload=payload)


def _add_entry(
    out: list[OddsEntry],
    metrics: FeedMetrics | None,
    fixture_id: str,
    group_bookmaker: Any,
    odds_id: Any,
    outcome: Any,
) -> None:
    # The hot path of the feed: exact type checks first (JSON gives int, Decimal, bool, str,
    # MessagePack gives int, float, bool, str), the general readers only when they fail.
    if type(outcome) is not dict:
        _bad_entry(metrics, fixture_id, odds_id, "outcome is not an object")
        return
    get = outcome.get
    bookmaker = get("bookmaker") or group_bookmaker
    outcome_id, market_id, player_id = get("outcomeId"), get("marketId"), get("playerId", 0)
    price, limit, active = get("price"), get("limit"), get("active")
    changed_at = get("changedAt")
    try:
        if type(bookmaker) is not str or not bookmaker:
            raise ValueError("bookmaker must be a non-empty string")
        if type(outcome_id) is not int:
            outcome_id = _req_int(outcome_id, "outcomeId")
        if type(market_id) is not int:
            market_id = _req_int(market_id, "marketId")
        if type(player_id) is not int:
            player_id = _opt_int(player_id) or 0
        if type(price) is not Decimal:
            price = _number(price)
            if price is None:
                raise ValueError("price must be a number")
        if limit is not None and type(limit) is not Decimal:
            limit = _number(limit)
            if limit is None:
                raise ValueError("limit must be a number or null")
        if type(active) is not bool:
            raise ValueError("active must be a boolean")
    except (ValueError, TypeError) as exc:
        _bad_entry(metrics, fixture_id, odds_id, str(exc))
        return
    if type(changed_at) is not int:
        changed_at = _opt_int(changed_at)
    if type(odds_id) is not str or not odds_id:
        odds_id = f"{fixture_id}:{bookmaker}:{outcome_id}:{player_id}"
    market_active, main_line, bm_changed = get("marketActive"), get("mainLine"), get("bookmakerChangedAt")
    out.append(
        OddsEntry(
            odds_id,
            fixture_id,
            bookmaker,
            market_id,
            outcome_id,
            player_id,
            price,
            limit,
            active,
            market_active if type(market_active) is bool else None,
            main_line if type(main_line) is bool else None,
            changed_at,
            bm_changed if type(bm_changed) is int else _opt_int(bm_changed),
        )
    )


def _sub(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = payload.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be an object")
    return value


def _fixture(obj: Mapping[str, Any]) -> FixtureUpdate:
    entry_id, ts, payload, fixture_id = _stream_head(obj)
    status = _sub(payload, "status")
    sport = _sub(payload, "sport")
    tournament = _sub(payload, "tournament")
    participants = _sub(payload, "participants")
    return FixtureUpdate(
        entry_id=entry_id,
        ts=ts,
        fixture_id=fixture_id,
        sport_id=_opt_int(sport.get("sportId")),
        sport_name=_opt_str(sport.get("sportName")),
        tournament_id=_opt_int(tournament.get("tournamentId")),
        tournament_name=_opt_str(tournament.get("tournamentName")),
        category_name=_opt_str(tournament.get("categoryName")),
        participant1_id=_opt_int(participants.get("participant1Id")),
        participant1_name=_opt_str(participants.get("participant1Name")),
        participant2_id=_opt_int(participants.get("participant2Id")),
        participant2_name=_opt_str(participants.get("participant2Name")),
        start_time=_opt_int(payload.get("startTime")),
        live=_opt_bool(status.get("live")),
        status_id=_opt_int(status.get("statusId")),
        status_name=_opt_str(status.get("statusName")),
        payload=payload,
    )


def _scores(obj: Mapping[str, Any]) -> ScoreUpdate:
    entry_id, ts, payload, fixture_id = _stream_head(obj)
    raw = payload.get("scores")
    if not isinstance(raw, dict):
        raise TypeError("scores must be an object keyed by period")
    scores: dict[str, PeriodScore] = {}
    for period, score in raw.items():
        if not isinstance(period, str) or not isinstance(score, dict):
            raise TypeError("each period score must be an object")
        p1, p2 = score.get("participant1Score"), score.get("participant2Score")
        for value in (p1, p2):
            if value is not None and _opt_int(value) is None:
                raise ValueError(f"score of period {period} is not an integer")
        scores[period] = PeriodScore(
            period=period,
            participant1_score=_opt_int(p1),
            participant2_score=_opt_int(p2),
            updated_at=_opt_str(score.get("updatedAt")),
        )
    return ScoreUpdate(entry_id=entry_id, ts=ts, fixture_id=fixture_id, scores=scores, payload=payload)


# --- encoding (client login, local server) ------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # odds/limits: float's repr is the shortest that round-trips
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_json(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_json_default)


def encode_msgpack(obj: Mapping[str, Any]) -> bytes:
    return msgpack.packb(obj, default=_json_default, use_bin_type=True)


def build_login(
    api_key: str,
    *,
    channels: Sequence[str] | None = DEFAULT_CHANNELS,
    sport_ids: Sequence[int] | None = None,
    tournament_ids: Sequence[int] | None = None,
    fixture_ids: Sequence[str] | None = None,
    bookmakers: Sequence[str] | None = None,
    receive_type: str = RECEIVE_JSON,
    server_epoch: str | None = None,
    last_seen_id: Mapping[str, str] | None = None,
    client_name: str | None = None,
    lang: str | None = None,
) -> str:
    """The login message (JSON text). Empty filters are left out (the gateway then applies no
    filter); resume cursors are sent only together with the epoch they belong to."""
    if not api_key:
        raise ValueError("api_key is required")
    if receive_type not in (RECEIVE_JSON, RECEIVE_BINARY):
        raise ValueError(f"receive_type must be 'json' or 'binary', got {receive_type!r}")
    msg: dict[str, Any] = {"type": "login", "apiKey": api_key, "receiveType": receive_type}
    for key, values in (
        ("channels", channels),
        ("sportIds", sport_ids),
        ("tournamentIds", tournament_ids),
        ("fixtureIds", fixture_ids),
        ("bookmakers", bookmakers),
    ):
        if values:
            msg[key] = list(values)
    if client_name:
        msg["clientName"] = client_name
    if lang:
        msg["lang"] = lang
    if server_epoch:
        msg["serverEpoch"] = server_epoch
        if last_seen_id:
            msg["lastSeenId"] = dict(last_seen_id)
    return encode_json(msg)
