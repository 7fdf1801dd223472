"""Replay files: an odds feed recorded (or generated) as JSON lines with relative timestamps.

Line 1 is a header object::

    {"format": "mmsite-odds-replay", "version": 1, "baseTimeMs": 1772366400000,
     "description": "...", "markets": [{"marketId": 101, "marketName": "...", "outcomes": [...]}]}

Every other line is one stream message as the gateway sends it, minus the cursor the gateway
assigns (``entryId``, ``ts``), plus ``t``, milliseconds since the start of the recording::

    {"t": 1500, "channel": "odds", "payload": {"fixtureId": "id...", "odds": {...}}}

A recording of a live feed may keep the gateway's cursor as ``sourceEntryId`` (ignored on replay).
``baseTimeMs`` is the wall-clock time of ``t = 0``; the local server can shift every timestamp
inside payloads by ``now - baseTimeMs`` so that a replay looks live (:func:`rebase_payload`).
Files are our own artefacts: a bad line is an error with its line number, not something to skip.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .protocol import FIXTURES, ODDS, encode_json

REPLAY_FORMAT = "mmsite-odds-replay"
REPLAY_VERSION = 1


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    t_ms: int
    channel: str
    payload: Mapping[str, Any]


@dataclass
class ReplayHeader:
    base_time_ms: int
    description: str = ""
    markets: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        obj = {
            "format": REPLAY_FORMAT,
            "version": REPLAY_VERSION,
            "baseTimeMs": self.base_time_ms,
            "description": self.description,
            "markets": self.markets,
        }
        obj.update(self.extra)
        return obj

    @classmethod
    def from_obj(cls, obj: Any) -> ReplayHeader:
        if not isinstance(obj, dict) or obj.get("format") != REPLAY_FORMAT:
            raise ValueError(f"not a replay file (header format is not {REPLAY_FORMAT!r})")
        if obj.get("version") != REPLAY_VERSION:
            raise ValueError(f"unsupported replay version {obj.get('version')!r}")
        base = obj.get("baseTimeMs")
        if not isinstance(base, int) or isinstance(base, bool):
            raise ValueError("header baseTimeMs must be an integer")
        known = {"format", "version", "baseTimeMs", "description", "markets"}
        return cls(
            base_time_ms=base,
            description=str(obj.get("description", "")),
            markets=list(obj.get("markets") or []),
            extra={k: v for k, v in obj.items() if k not in known},
        )


def _event(obj: Any, lineno: int, last_t: int) -> ReplayEvent:
    if not isinstance(obj, dict):
        raise ValueError(f"line {lineno}: not an object")
    t = obj.get("t")
    channel = obj.get("channel")
    payload = obj.get("payload")
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        raise ValueError(f"line {lineno}: t must be a non-negative integer")
    if t < last_t:
        raise ValueError(f"line {lineno}: t goes backwards ({t} < {last_t})")
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"line {lineno}: channel must be a string")
    if not isinstance(payload, dict) or not isinstance(payload.get("fixtureId"), str):
        raise ValueError(f"line {lineno}: payload must be an object with a fixtureId")
    return ReplayEvent(t_ms=t, channel=channel, payload=payload)


def iter_replay(path: str | Path) -> Iterator[ReplayHeader | ReplayEvent]:
    """Yield the header, then every event, in file order."""
    with open(path, encoding="utf-8") as fh:
        header_line = fh.readline()
        if not header_line.strip():
            raise ValueError("empty replay file")
        yield ReplayHeader.from_obj(json.loads(header_line))
        last_t = 0
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"line {lineno}: {exc}") from exc
            event = _event(obj, lineno, last_t)
            last_t = event.t_ms
            yield event


def read_replay(path: str | Path) -> tuple[ReplayHeader, list[ReplayEvent]]:
    items = iter_replay(path)
    header = next(items)
    assert isinstance(header, ReplayHeader)
    return header, [e for e in items if isinstance(e, ReplayEvent)]


class ReplayWriter:
    """Write a replay file. ``t`` defaults to the time since the writer was opened (monotonic
    clock), so a recorder can simply call :meth:`write` for every stream frame it receives."""

    def __init__(self, target: str | Path | IO[str], header: ReplayHeader | None = None) -> None:
        self._own = not hasattr(target, "write")
        self._fh: IO[str] = open(target, "w", encoding="utf-8") if self._own else target  # noqa: SIM115
        self._start = time.monotonic()
        self._last_t = 0
        header = header or ReplayHeader(base_time_ms=int(time.time() * 1000))
        self._fh.write(json.dumps(header.to_obj(), separators=(",", ":")) + "\n")

    def write(
        self, channel: str, payload: Mapping[str, Any], t_ms: int | None = None, source_entry_id: str | None = None
    ) -> None:
        if t_ms is None:
            t_ms = int((time.monotonic() - self._start) * 1000)
        t_ms = max(t_ms, self._last_t)  # never backwards, even across clock hiccups
        self._last_t = t_ms
        line: dict[str, Any] = {"t": t_ms, "channel": channel, "payload": payload}
        if source_entry_id:
            line["sourceEntryId"] = source_entry_id
        self._fh.write(encode_json(line) + "\n")

    def close(self) -> None:
        self._fh.flush()
        if self._own:
            self._fh.close()

    def __enter__(self) -> ReplayWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rebase_payload(channel: str, payload: Mapping[str, Any], delta_ms: int) -> Mapping[str, Any]:
    """A copy of ``payload`` with its absolute timestamps moved by ``delta_ms``: ``changedAt`` and
    ``bookmakerChangedAt`` of odds entries, ``startTime`` (seconds) of fixtures. Score
    ``updatedAt`` strings are left alone (only a display value)."""
    if not delta_ms:
        return payload
    if channel == ODDS:
        out = copy.deepcopy(dict(payload))
        groups = out.get("odds") or out.get("bookmakers") or {}
        for group in groups.values():
            outcomes = [group] if "outcomeId" in group else group.values()
            for outcome in outcomes:
                for key in ("changedAt", "bookmakerChangedAt"):
                    if isinstance(outcome.get(key), int):
                        outcome[key] += delta_ms
        return out
    if channel == FIXTURES and isinstance(payload.get("startTime"), int):
        out = dict(payload)
        out["startTime"] = payload["startTime"] + delta_ms // 1000
        return out
    return payload


def relabel_fixtures(events: list[ReplayEvent], suffix: str) -> list[ReplayEvent]:
    """The same events about new fixtures: every ``fixtureId`` (and the ``oddsId`` keys and
    ``odds_id`` prefixes that embed it) gets ``suffix`` appended. A looping replay plays each lap
    on fresh fixtures, since a fixture that finished on the previous lap must not start again."""
    if not suffix:
        return events
    out = []
    for event in events:
        payload = dict(event.payload)
        fid = payload["fixtureId"]
        new = f"{fid}{suffix}"
        payload["fixtureId"] = new
        if event.channel == ODDS:
            key = "odds" if "odds" in payload else "bookmakers"
            groups: dict[str, Any] = {}
            for bookmaker, group in (payload.get(key) or {}).items():
                if isinstance(group, dict) and "outcomeId" not in group:
                    groups[bookmaker] = {
                        (new + odds_id[len(fid) :] if odds_id.startswith(fid + ":") else odds_id): outcome
                        for odds_id, outcome in group.items()
                    }
                elif isinstance(bookmaker, str) and bookmaker.startswith(fid + ":"):  # flat {oddsId: outcome}
                    groups[new + bookmaker[len(fid) :]] = group
                else:
                    groups[bookmaker] = group
            payload[key] = groups
        out.append(ReplayEvent(t_ms=event.t_ms, channel=event.channel, payload=payload))
    return out
