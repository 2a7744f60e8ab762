"""The interface cache's sans-IO core: policies, schedules, keys, the breaker, marking.

Keys are checked with property tests: what the caller chooses per call (message id, user id,
issue, namespace prefixes, whitespace) never changes a key; a different body, client (unless
shared), service or attachment always does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway import faults
from gateway.cache.breaker import CircuitBreaker, CircuitState
from gateway.cache.key import (
    normalise_identifier,
    rest_identifiers,
    rest_key,
    soap_identifiers,
    soap_key,
    subject_token,
    subject_tokens,
)
from gateway.cache.marking import (
    CACHE_NS,
    HEADER_AGE,
    HEADER_CACHE,
    CacheMark,
    CacheStatus,
    SoapMarkTemplate,
    mark_soap,
    marked_fields,
    read_soap_mark,
)
from gateway.cache.policy import (
    CIRCUIT_OPEN,
    DEFAULT_TTL_SECONDS,
    BreakerSettings,
    CacheMode,
    CachePolicy,
    CacheSide,
    LastSuccessParameter,
    ListParameter,
    PolicyError,
    ReplicatedRequest,
    ReplicationPlan,
    RetrySettings,
    choose_policy,
)
from gateway.cache.schedule import CronExpression, Schedule, ScheduleError
from gateway.ids import ClientId, ServiceId
from gateway.protocol import mime, rest, soap
from gateway.serverconf.access import Endpoint

CLIENT = ClientId("DEV", "GOV", "1111", "benefits")
OTHER_CLIENT = ClientId("DEV", "GOV", "1111", "pensions")
SERVICE = ServiceId("DEV", "GOV", "2222", "population", "getPerson", "v1")
OTHER_SERVICE = ServiceId("DEV", "GOV", "2222", "population", "getAddress", "v1")
REST_SERVICE = ServiceId("DEV", "GOV", "3333", "benefits", "api")
KNOWN = frozenset({SERVICE, OTHER_SERVICE, REST_SERVICE})


def policy(**changes: object) -> CachePolicy:
    values: dict[str, object] = {"name": "population", "service": SERVICE, "mode": CacheMode.FALLBACK}
    values.update(changes)
    return CachePolicy(**values)  # type: ignore[arg-type]


# --- policies --------------------------------------------------------------------------------


def test_a_plain_fallback_policy_is_valid_and_round_trips_through_its_document() -> None:
    original = policy(
        endpoint=None,
        clients=frozenset({CLIENT}),
        fault_codes=frozenset({faults.NETWORK_ERROR}),
        idempotent=True,
        retry=RetrySettings(attempts=3, backoff_seconds=0.1),
        breaker=BreakerSettings(consecutive_failures=3),
    )
    original.validate(KNOWN)
    assert CachePolicy.from_document(original.to_document()) == original


def test_a_replicate_policy_round_trips_with_its_plan() -> None:
    plan = ReplicationPlan(
        CLIENT,
        (
            ReplicatedRequest(
                "persons",
                soap_body='<p:getPerson xmlns:p="urn:pop"><p:id>${id}</p:id></p:getPerson>',
                parameters={"id": ListParameter(("38001085718", "49002124277"))},
            ),
            ReplicatedRequest(
                "changes",
                method="GET",
                path="/benefits",
                query="since=${since}",
                parameters={"since": LastSuccessParameter()},
            ),
        ),
        Schedule.at("*/15 6-18 * * 1-5"),
    )
    original = policy(name="benefits", service=REST_SERVICE, mode=CacheMode.REPLICATE, replication=plan)
    original.validate(KNOWN)
    again = CachePolicy.from_document(original.to_document())
    assert again == original
    assert again.replication is not None and again.replication.schedule.cron is not None
    assert again.replication.schedule.cron.text == "*/15 6-18 * * 1-5"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"service": ServiceId("DEV", "GOV", "9", "x", "nothing")}, "unknown service"),
        ({"mode": CacheMode.REFRESH, "ttl_seconds": 7200.0, "max_age_seconds": 3600.0}, "exceeds max_age"),
        ({"max_entry_bytes": 0}, "must be positive"),
        ({"max_entry_bytes": 10, "max_total_bytes": 5}, "max_entry_bytes exceeds max_total_bytes"),
        ({"max_age_seconds": -1.0}, "max_age_seconds"),
        ({"mode": CacheMode.REPLICATE}, "needs a replication plan"),
        ({"fault_codes": frozenset({"not a code"})}, "not a dotted code"),
        ({"name": "has space"}, "policy name"),
        ({"breaker": BreakerSettings(failure_rate=1.5)}, "failure_rate"),
        ({"retry": RetrySettings(attempts=50)}, "retry.attempts"),
    ],
)
def test_validation_names_the_problem(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(PolicyError) as raised:
        policy(**changes).validate(KNOWN)
    assert problem in str(raised.value)


def test_validation_lists_every_problem_at_once() -> None:
    bad = policy(service=ServiceId("DEV", "GOV", "9", "x", "nothing"), max_entry_bytes=-1)
    with pytest.raises(PolicyError) as raised:
        bad.validate(KNOWN)
    assert len(raised.value.problems) == 2


def test_replication_plan_problems_are_reported() -> None:
    plan = ReplicationPlan(
        CLIENT,
        (ReplicatedRequest("r", method="GET", path="/p/${id}", parameters={"other": ListParameter(("1",))}),),
        Schedule.every(60),
    )
    with pytest.raises(PolicyError) as raised:
        policy(mode=CacheMode.REPLICATE, replication=plan).validate(KNOWN)
    text = str(raised.value)
    assert "no parameter for id" in text and "not used" in text


def test_malformed_documents_are_refused_with_a_policy_error() -> None:
    document = policy().to_document()
    document["colour"] = "blue"
    with pytest.raises(PolicyError, match="unknown cache policy fields: colour"):
        CachePolicy.from_document(document)
    del document["colour"]
    del document["service"]
    with pytest.raises(PolicyError, match="missing field"):
        CachePolicy.from_document(document)
    with pytest.raises(PolicyError):
        CachePolicy.from_document({**policy().to_document(), "mode": "sometimes"})


def test_default_faults_cover_provider_failures_but_not_refusals() -> None:
    chosen = policy()
    for code in (
        faults.NETWORK_ERROR,
        faults.SSL_AUTHENTICATION_FAILED,
        faults.SERVICE_FAILED_TIMEOUT,
        faults.SERVICE_FAILED_HTTP_ERROR,
        faults.SERVICE_FAILED_NETWORK_ERROR,
        faults.CLIENT_PROXY_INVALID_SIGNATURE,
        CIRCUIT_OPEN,
    ):
        assert chosen.applies_to_fault(code), code
    for code in (faults.ACCESS_DENIED, faults.UNKNOWN_SERVICE, faults.INVALID_REQUEST, faults.UNKNOWN_MEMBER):
        assert not chosen.applies_to_fault(code), code
    narrow = policy(fault_codes=frozenset({faults.SERVICE_FAILED_TIMEOUT}))
    assert narrow.applies_to_fault(faults.SERVICE_FAILED_TIMEOUT)
    assert not narrow.applies_to_fault(faults.NETWORK_ERROR)
    # A listed code covers its sub-codes, not its siblings with a common prefix.
    assert not policy(fault_codes=frozenset({"Server.ServerProxy.Service"})).applies_to_fault(
        faults.SERVICE_FAILED
    )


def test_ttl_and_max_age_decide_what_may_be_served() -> None:
    fallback = policy()
    assert not fallback.is_fresh(0.0)  # fallback never answers without asking
    assert fallback.may_serve(3600.0) and not fallback.may_serve(fallback.max_age_seconds + 1)
    refresh = policy(mode=CacheMode.REFRESH, ttl_seconds=60.0, max_age_seconds=600.0)
    assert refresh.is_fresh(59.0) and not refresh.is_fresh(60.0)
    assert refresh.may_serve(600.0) and not refresh.may_serve(600.5)
    assert policy(mode=CacheMode.REFRESH).effective_ttl_seconds == DEFAULT_TTL_SECONDS


def test_the_most_specific_matching_policy_wins() -> None:
    whole = policy(name="whole", service=REST_SERVICE)
    endpoint = policy(name="endpoint", service=REST_SERVICE, endpoint=Endpoint("GET", "/persons/{id}"))
    for_client = policy(name="client", service=REST_SERVICE, clients=frozenset({OTHER_CLIENT}))
    off = policy(name="off", service=REST_SERVICE, endpoint=Endpoint("*", "/**"), mode=CacheMode.OFF)
    provider = policy(name="provider", service=REST_SERVICE, side=CacheSide.PROVIDER)
    policies = [whole, endpoint, for_client, off, provider]
    assert choose_policy(policies, REST_SERVICE, CLIENT, "GET", "/persons/1") == endpoint
    assert choose_policy(policies, REST_SERVICE, CLIENT, "POST", "/persons/1") == whole
    assert choose_policy(policies, REST_SERVICE, OTHER_CLIENT, "POST", "/x") == for_client
    assert choose_policy(policies, SERVICE, CLIENT) is None
    assert choose_policy(policies, REST_SERVICE, CLIENT, "GET", "/x", side=CacheSide.PROVIDER) == provider


def test_replicated_requests_expand_lists_and_the_last_success_time() -> None:
    request = ReplicatedRequest(
        "r",
        method="get",
        path="/persons/${id}",
        query="since=${since}&x=1",
        parameters={"id": ListParameter(("a b", "c/d")), "since": LastSuccessParameter()},
    )
    first = request.expand(None)
    assert [(call.path, call.query) for call in first] == [
        ("/persons/a%20b", "since=1970-01-01T00%3A00%3A00Z&x=1"),
        ("/persons/c%2Fd", "since=1970-01-01T00%3A00%3A00Z&x=1"),
    ]
    later = request.expand(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))
    assert later[0].query == "since=2026-12-06T12%3A00%3A00Z&x=1"
    assert later[0].method == "GET"
    soap_request = ReplicatedRequest(
        "s", soap_body="<op><id>${id}</id></op>", parameters={"id": ListParameter(("<&>",))}
    )
    assert soap_request.expand(None)[0].soap_body == "<op><id>&lt;&amp;&gt;</id></op>"


# --- schedules -------------------------------------------------------------------------------


def test_cron_expressions_give_the_next_run() -> None:
    at = datetime(2026, 12, 6, 12, 7, 30, tzinfo=UTC)  # a Sunday
    assert CronExpression.parse("*/15 * * * *").next_after(at) == at.replace(minute=15, second=0)
    assert CronExpression.parse("0 2 * * *").next_after(at) == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    # Monday to Friday at 06:30: the Sunday is skipped.
    assert CronExpression.parse("30 6 * * 1-5").next_after(at) == datetime(2026, 12, 7, 6, 30, tzinfo=UTC)
    # Both day fields restricted: either matches (POSIX).
    assert CronExpression.parse("0 0 1 * 1").next_after(at) == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    assert CronExpression.parse("0 0 31 2 *").next_after(at) is None
    assert CronExpression.parse("0 0 * * 7").next_after(at) == datetime(2026, 12, 13, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *", "MON * * * *", "1,,2 * * * *"],
)
def test_bad_cron_expressions_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        CronExpression.parse(text)


def test_intervals_are_bounded() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    assert Schedule.every(600).next_after(at) == at + timedelta(minutes=10)
    with pytest.raises(ScheduleError):
        Schedule.every(1)
    with pytest.raises(ScheduleError):
        Schedule.from_document({"interval_seconds": 60, "cron": "* * * * *"})


# --- keys ------------------------------------------------------------------------------------

_text = (
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)


def soap_request(
    person: str,
    *,
    client: ClientId = CLIENT,
    service: ServiceId = SERVICE,
    message_id: str = "id-1",
    user_id: str | None = None,
    issue: str | None = None,
    prefix: str = "p",
    pretty: bool = False,
) -> soap.SoapMessage:
    element = etree.Element(f"{{urn:pop}}{service.service_code}", nsmap={prefix: "urn:pop"})
    child = etree.SubElement(element, "{urn:pop}id")
    child.text = person
    if pretty:
        element.text = "\n  "
        child.tail = "\n"
    raw = soap.build_request(client, service, element, message_id=message_id, user_id=user_id, issue=issue)
    return soap.parse_request(raw, "text/xml; charset=utf-8")


@settings(max_examples=60, deadline=None)
@given(
    person=_text,
    ids=st.tuples(_text, _text),
    users=st.tuples(st.none() | _text, st.none() | _text),
    issues=st.tuples(st.none() | _text, st.none() | _text),
    prefixes=st.tuples(st.sampled_from(["p", "ns0", "tns"]), st.sampled_from(["p", "ns1", "x"])),
    pretty=st.tuples(st.booleans(), st.booleans()),
)
def test_caller_chosen_parts_do_not_change_the_soap_key(
    person: str,
    ids: tuple[str, str],
    users: tuple[str | None, str | None],
    issues: tuple[str | None, str | None],
    prefixes: tuple[str, str],
    pretty: tuple[bool, bool],
) -> None:
    first, second = (
        soap_request(
            person, message_id=ids[i], user_id=users[i], issue=issues[i], prefix=prefixes[i], pretty=pretty[i]
        )
        for i in range(2)
    )
    assert soap_key(first, shared=False) == soap_key(second, shared=False)


@settings(max_examples=60, deadline=None)
@given(people=st.tuples(_text, _text).filter(lambda pair: pair[0] != pair[1]))
def test_different_bodies_give_different_soap_keys(people: tuple[str, str]) -> None:
    first, second = (soap_request(person) for person in people)
    assert soap_key(first, shared=False).digest != soap_key(second, shared=False).digest
    assert soap_key(first, shared=True).digest != soap_key(second, shared=True).digest


def test_the_client_is_in_the_key_unless_shared_and_the_service_always() -> None:
    mine, theirs = soap_request("1234", client=CLIENT), soap_request("1234", client=OTHER_CLIENT)
    assert soap_key(mine, shared=False).digest != soap_key(theirs, shared=False).digest
    assert soap_key(mine, shared=True) == soap_key(theirs, shared=True)
    assert soap_key(mine, shared=True).client is None
    assert soap_key(mine, shared=False).client == CLIENT
    other_service = soap_request("1234", service=OTHER_SERVICE)
    assert soap_key(mine, shared=True).digest != soap_key(other_service, shared=True).digest


def test_attachments_are_in_the_soap_key() -> None:
    plain = soap_request("1234")

    def with_attachment(data: bytes) -> soap.SoapMessage:
        body, content_type = mime.build_multipart(
            plain.soap_bytes, [mime.Attachment("a1", "text/plain", data)]
        )
        return soap.parse_request(body, content_type)

    one, same, other = with_attachment(b"one"), with_attachment(b"one"), with_attachment(b"two")
    assert soap_key(one, shared=False) == soap_key(same, shared=False)
    assert soap_key(one, shared=False).digest != soap_key(other, shared=False).digest
    assert soap_key(one, shared=False).digest != soap_key(plain, shared=False).digest


def rest_request(
    path: str = "/persons/1234",
    query: str = "",
    *,
    method: str = "GET",
    client: ClientId = CLIENT,
    message_id: str | None = None,
    user_id: str | None = None,
    body: bytes = b"",
    accept: str | None = None,
) -> rest.RestRequest:
    headers = [(rest.HEADER_CLIENT, client.to_text())]
    if message_id is not None:
        headers.append((rest.HEADER_ID, message_id))
    if user_id is not None:
        headers.append((rest.HEADER_USER_ID, user_id))
    if accept is not None:
        headers.append(("Accept", accept))
    if body:
        headers.append(("Content-Type", "application/json"))
    parsed = rest.parse_rest_request(method, REST_SERVICE.to_rest_path(path), query, headers, body)
    assert isinstance(parsed, rest.RestRequest)
    return parsed


@settings(max_examples=40, deadline=None)
@given(ids=st.tuples(_text, _text), users=st.tuples(st.none() | _text, st.none() | _text))
def test_caller_chosen_parts_and_query_order_do_not_change_the_rest_key(
    ids: tuple[str, str], users: tuple[str | None, str | None]
) -> None:
    first = rest_request(query="b=2&a=1", message_id=ids[0].replace(" ", ""), user_id=users[0])
    second = rest_request(query="a=1&b=2", message_id=ids[1].replace(" ", ""), user_id=users[1])
    assert rest_key(first, shared=False) == rest_key(second, shared=False)


def test_rest_keys_differ_by_method_path_query_body_and_accept() -> None:
    base = rest_key(rest_request(query="a=1"), shared=False).digest
    variants = [
        rest_request(query="a=2"),
        rest_request("/persons/1235", query="a=1"),
        rest_request(query="a=1", method="DELETE"),
        rest_request(query="a=1", method="POST", body=b'{"x": 1}'),
        rest_request(query="a=1", accept="application/xml"),
        rest_request(query="a=1", client=OTHER_CLIENT),
    ]
    digests = {rest_key(variant, shared=False).digest for variant in variants}
    assert base not in digests and len(digests) == len(variants)


def test_person_identifiers_are_found_and_normalised() -> None:
    message = soap_request("EE-380 0108 5718")
    assert "EE-380 0108 5718" in set(soap_identifiers(message))
    assert normalise_identifier("EE-380 0108 5718") == normalise_identifier("ee38001085718")
    assert normalise_identifier("ab") is None  # too short to name anyone
    secret = b"k" * 32
    assert subject_token("EE-380 0108 5718", secret) == subject_token("ee38001085718", secret)
    assert subject_token("ee38001085718", secret) != subject_token("ee38001085718", b"j" * 32)
    request = rest_request(
        "/persons/38001085718", "since=2026&flag=1", method="POST", body=b'{"ids": ["4900212"]}'
    )
    values = set(rest_identifiers(request))
    assert {"persons", "38001085718", "2026", "1", "4900212"} <= values
    tokens = subject_tokens(values, secret)
    assert subject_token("4900212", secret) in tokens
    assert subject_token("1", secret) not in tokens


# --- the breaker -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_and_closes_after_probes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        BreakerSettings(consecutive_failures=3, open_seconds=10, half_open_successes=2), clock
    )
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure(faults.NETWORK_ERROR)
    breaker.record_success()  # the run of failures is broken
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure(faults.NETWORK_ERROR)
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    assert breaker.last_fault == faults.NETWORK_ERROR
    clock.now = 10.0
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure(faults.SERVICE_FAILED_TIMEOUT)  # a failed probe opens it again
    assert breaker.state is CircuitState.OPEN
    clock.now = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.status().calls_in_window == 0


def test_the_breaker_opens_on_a_failure_rate_over_the_window() -> None:
    clock = Clock()
    settings_ = BreakerSettings(
        consecutive_failures=100, failure_rate=0.5, window_seconds=60, min_calls_in_window=10
    )
    breaker = CircuitBreaker(settings_, clock)
    for i in range(9):  # alternate: never many in a row, but half fail
        breaker.record_failure(faults.NETWORK_ERROR) if i % 2 else breaker.record_success()
        clock.now += 1
    assert breaker.state is CircuitState.CLOSED  # 9 calls: below the minimum
    breaker.record_failure(faults.NETWORK_ERROR)
    assert breaker.state is CircuitState.OPEN
    # Old outcomes leave the window.
    other = CircuitBreaker(settings_, clock)
    for _ in range(8):  # below the minimum of calls: stays closed
        other.record_failure(faults.NETWORK_ERROR)
    other.record_success()
    clock.now += 120  # without trimming, 9 failures of 18 calls would open it below
    for _ in range(8):
        other.record_success()
    other.record_failure(faults.NETWORK_ERROR)
    assert other.state is CircuitState.CLOSED


def test_a_released_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(consecutive_failures=1, open_seconds=1), clock)
    breaker.record_failure(faults.NETWORK_ERROR)
    clock.now = 1.0
    assert breaker.allow() and not breaker.allow()
    breaker.release_probe()
    assert breaker.allow()


# --- marking ---------------------------------------------------------------------------------

STORED_AT = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def test_the_cache_field_reads_back_and_quotes_odd_ids() -> None:
    mark = CacheMark.of(
        CacheStatus.STALE, 'id; with "quotes"', STORED_AT, STORED_AT + timedelta(seconds=42.7)
    )
    assert mark.age_seconds == 42
    value = mark.header_value()
    assert value.startswith("stale; age=42; original-id=") and value.endswith(
        "stored-at=2026-12-06T12:00:00Z"
    )
    assert CacheMark.parse(value) == mark
    plain = CacheMark(CacheStatus.HIT, 0, "abc-1", STORED_AT)
    assert plain.header_value() == "hit; age=0; original-id=abc-1; stored-at=2026-12-06T12:00:00Z"
    fields = marked_fields((("Content-Type", "application/json"), ("age", "999")), plain)
    assert fields == (
        ("Content-Type", "application/json"),
        (HEADER_CACHE, plain.header_value()),
        (HEADER_AGE, "0"),
    )


def test_a_soap_answer_gets_the_cache_block_and_keeps_its_body() -> None:
    request = soap_request("1234")
    answer = etree.Element("{urn:pop}getPersonResponse")
    etree.SubElement(answer, "{urn:pop}name").text = "Mari"
    raw = soap.build_response(request, answer)
    mark = CacheMark(CacheStatus.STALE, 5, request.id, STORED_AT)
    marked = mark_soap(raw, "text/xml; charset=utf-8", mark)
    parsed = soap.parse_response(marked, "text/xml; charset=utf-8")
    assert parsed.body.findtext("{urn:pop}name") == "Mari"
    assert read_soap_mark(marked, "text/xml") == mark
    assert CACHE_NS.encode() in marked
    assert read_soap_mark(raw, "text/xml") is None
    # Marking twice leaves one block: a provider cannot pre-mark an answer.
    again = mark_soap(marked, "text/xml", CacheMark(CacheStatus.HIT, 1, "x", STORED_AT))
    assert again.count(b'urn:xgate:cache:1"') == 1


def test_marking_a_multipart_answer_keeps_the_attachments_byte_for_byte() -> None:
    request = soap_request("1234")
    raw = soap.build_response(request, etree.Element("{urn:pop}getPersonResponse"))
    body, content_type = mime.build_multipart(
        raw, [mime.Attachment("a1", "application/octet-stream", b"\x00\x01")]
    )
    marked = mark_soap(body, content_type, CacheMark(CacheStatus.HIT, 1, "m", STORED_AT))
    package = mime.unpack(marked, content_type)
    assert package.attachments[0].data == b"\x00\x01"
    assert read_soap_mark(marked, content_type) is not None


def test_a_mark_template_gives_the_bytes_marking_afresh_gives() -> None:
    request = soap_request("1234")
    answer = etree.Element("{urn:pop}getPersonResponse")
    etree.SubElement(answer, "{urn:pop}name").text = "Jüri Õun"
    raw = soap.build_response(request, answer)
    multipart, multipart_type = mime.build_multipart(
        raw, [mime.Attachment("a1", "application/octet-stream", b"\x00\x01")]
    )
    latin = re.sub(r"^<\?xml[^>]*\?>", "", raw.decode().lstrip()).lstrip().encode("iso-8859-15")
    for body, content_type in (
        (raw, "text/xml; charset=utf-8"),
        (multipart, multipart_type),
        (latin, "text/xml; charset=iso-8859-15"),
    ):
        template = SoapMarkTemplate.of(body, content_type, 'id "with" <odd> & chars', STORED_AT)
        assert template is not None
        for status, age in ((CacheStatus.HIT, 0), (CacheStatus.STALE, 86399)):
            mark = CacheMark(status, age, 'id "with" <odd> & chars', STORED_AT)
            assert template.fill(mark) == mark_soap(body, content_type, mark)
        with pytest.raises(ValueError, match="another entry"):
            template.fill(CacheMark(CacheStatus.HIT, 0, "other", STORED_AT))


def test_marking_keeps_a_non_utf8_answer_readable() -> None:
    request = soap_request("1234")
    answer = etree.Element("{urn:pop}getPersonResponse")
    etree.SubElement(answer, "{urn:pop}name").text = "Jüri Õun"
    raw = soap.build_response(request, answer).decode("utf-8")
    latin = re.sub(r"^<\?xml[^>]*\?>", "", raw.lstrip()).lstrip().encode("iso-8859-15")
    assert not latin.startswith(b"<?xml")
    marked = mark_soap(latin, "text/xml; charset=iso-8859-15", CacheMark(CacheStatus.HIT, 1, "m", STORED_AT))
    parsed = soap.parse_response(marked, "text/xml; charset=iso-8859-15")
    assert parsed.body.findtext("{urn:pop}name") == "Jüri Õun"
