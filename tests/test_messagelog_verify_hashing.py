"""The record hash, computed faster for verification, is the same hash (gateway.messagelog.record).

Every stored record's hash was computed from `json.dumps(..., sort_keys=True)` and
`strftime`: the faster text must be the same text for every input, or old records stop verifying.
"""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.messagelog.record import _time, canonical_json

_any_text = st.text(st.characters(exclude_categories=("Cs",)))
_values = st.none() | _any_text | st.lists(_any_text, max_size=4)
_others = st.integers() | st.booleans() | st.floats(allow_nan=False) | st.dictionaries(_any_text, _any_text)


@settings(max_examples=400)
@given(st.dictionaries(_any_text, _values, max_size=25))
def test_canonical_json_is_json_dumps_sorted_and_compact(fields: dict[str, object]) -> None:
    expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(fields) == expected


@given(st.dictionaries(_any_text, _values | _others, min_size=1, max_size=10))
def test_other_values_are_encoded_by_json_dumps(fields: dict[str, object]) -> None:
    expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(fields) == expected


@settings(max_examples=400)
@given(st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-7, minutes=-30))])))
def test_log_times_are_written_as_strftime_writes_them(value: dt.datetime) -> None:
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        return  # not a time a record can hold
    assert _time(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
