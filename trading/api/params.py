"""Parsing of path ids: a malformed id is a 400 naming the parameter, an unknown one a 404."""

from mmsite.api.errors import invalid_parameter


def parse_id(raw: str, name: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or int(raw) < 1 or int(raw) > 2**63 - 1:
        raise invalid_parameter(name, f"must be a positive integer, got {raw!r}")
    return int(raw)
