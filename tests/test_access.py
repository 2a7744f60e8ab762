"""Access-rights decisions and REST endpoint matching (gateway.serverconf.access).

Matching is checked against an independent reference (fnmatch, segment by segment) and by
properties; decisions by the rules the module states: default deny, a right for one client
never serves another, a member is not its subsystems.
"""

from __future__ import annotations

import fnmatch
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ids import ClientId, GlobalGroupId, LocalGroupId, ServiceId
from gateway.serverconf.access import (
    AccessRight,
    Endpoint,
    ServiceRights,
    is_allowed,
    normalise_path,
    rights_of,
    subject_includes,
)

EXAMPLES = settings(max_examples=200, deadline=None)

codes = st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True)
clients = st.builds(ClientId, codes, codes, codes, st.none() | codes)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
# Path characters with no meaning to patterns or to percent-decoding.
segment_text = st.text(alphabet="abcXYZ019-_~!$&'()+,;=:@", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
segment_lists = st.lists(segment_text, max_size=5)


def as_path(segments: list[str]) -> str:
    return "/" + "/".join(segments)


def service_of(provider: ClientId, code: str = "getPerson") -> ServiceId:
    return ServiceId(
        provider.instance, provider.member_class, provider.member_code, provider.subsystem_code, code
    )


PROVIDER = ClientId("EE", "GOV", "70000001", "registry")
SERVICE = service_of(PROVIDER)
NO_GLOBAL_GROUPS = lambda client, group: False  # noqa: E731


def allowed(
    client: ClientId, rights: list[AccessRight], method: str | None = None, path: str | None = None
) -> bool:
    return is_allowed(
        client,
        SERVICE,
        rights,
        method=method,
        path=path,
        global_group_member=NO_GLOBAL_GROUPS,
        local_groups={},
    )


# --- endpoint matching -----------------------------------------------------------------


@EXAMPLES
@given(segment_lists, methods)
def test_literal_pattern_matches_exactly_its_path(segments: list[str], method: str) -> None:
    path = as_path(segments)
    assert Endpoint(method, path).matches(method, path)
    assert Endpoint("*", path).matches(method, path)
    assert not Endpoint(method, path + "/more").matches(method, path)


@EXAMPLES
@given(segment_lists, segment_text, segment_text, methods)
def test_star_matches_one_segment_and_never_crosses_a_slash(
    prefix: list[str], first: str, second: str, method: str
) -> None:
    endpoint = Endpoint(method, as_path([*prefix, "*"]))
    assert endpoint.matches(method, as_path([*prefix, first]))
    assert not endpoint.matches(method, as_path([*prefix, first, second]))
    assert not Endpoint(method, as_path([*prefix, "a*"])).matches(
        method, as_path([*prefix, "a" + first, second])
    )


@EXAMPLES
@given(segment_text, st.text(alphabet="abc019-_~", max_size=6), segment_text)
def test_star_inside_a_segment_matches_any_run_of_characters(head: str, middle: str, tail: str) -> None:
    endpoint = Endpoint("GET", f"/{head}*{tail}")
    assert endpoint.matches("GET", f"/{head}{middle}{tail}")
    assert not endpoint.matches("GET", f"/{head}{middle}/{tail}")


@EXAMPLES
@given(segment_lists, segment_lists, segment_text)
def test_double_star_matches_the_path_and_everything_beneath(
    prefix: list[str], rest: list[str], other: str
) -> None:
    endpoint = Endpoint("GET", as_path([*prefix, "**"]))
    assert endpoint.matches("GET", as_path(prefix))
    assert endpoint.matches("GET", as_path([*prefix, *rest]))
    if prefix and other != prefix[0]:
        assert not endpoint.matches("GET", as_path([other, *prefix[1:], *rest]))


@EXAMPLES
@given(segment_lists, methods, st.sampled_from(["", "/", "//"]))
def test_matching_sees_through_empty_segments_and_trailing_slashes(
    segments: list[str], method: str, trailing: str
) -> None:
    pattern = Endpoint(method, as_path(segments))
    untidy = "//" + "//".join(segments) + trailing
    assert pattern.matches(method, untidy)
    assert Endpoint(method, untidy if untidy.startswith("/") else "/" + untidy) == pattern


def test_method_must_match_unless_star_and_is_case_insensitive() -> None:
    assert Endpoint("get", "/a").matches("GET", "/a")
    assert Endpoint("GET", "/a").matches("get", "/a")
    assert not Endpoint("GET", "/a").matches("POST", "/a")
    assert Endpoint("*", "/a").matches("PROPFIND", "/a")


def test_percent_encoding_is_normalised_but_an_encoded_slash_stays_in_its_segment() -> None:
    assert Endpoint("GET", "/users/~me").matches("GET", "/users/%7Eme")
    assert Endpoint("GET", "/users/%7eme").matches("GET", "/users/~me")
    assert Endpoint("GET", "/files/a%2fb").matches("GET", "/files/a%2Fb")
    assert Endpoint("GET", "/files/*").matches("GET", "/files/a%2Fb")
    assert not Endpoint("GET", "/files/a/b").matches("GET", "/files/a%2Fb")


@pytest.mark.parametrize("path", ["/a/../b", "/a/./b", "/a/%2e%2e/b", "/a/%2E/b", "/.."])
def test_dot_segments_never_match(path: str) -> None:
    assert normalise_path(path) is None
    assert not Endpoint("*", "/**").matches("GET", path)


def test_templates_match_one_non_empty_segment() -> None:
    endpoint = Endpoint("GET", "/pets/{petId}/photos/{photo}.jpg")
    assert endpoint.matches("GET", "/pets/7/photos/cat.jpg")
    assert not endpoint.matches("GET", "/pets/7/photos/.jpg")
    assert not endpoint.matches("GET", "/pets/7/8/photos/cat.jpg")


@pytest.mark.parametrize(
    ("method", "pattern"),
    [
        ("GET", "pets"),
        ("GET", "/a/**/b"),
        ("GET", "/a/../b"),
        ("G ET", "/a"),
        ("", "/a"),
        ("GET", "/" + "a" * 3000),
    ],
)
def test_malformed_endpoints_are_refused(method: str, pattern: str) -> None:
    with pytest.raises(ValueError):
        Endpoint(method, pattern)


def test_a_pathological_pattern_cannot_make_matching_slow() -> None:
    # Naive regex translation backtracks exponentially here; atomic groups keep it linear.
    endpoint = Endpoint("*", "/" + "*a" * 25 + "*b")
    started = time.perf_counter()
    assert not endpoint.matches("GET", "/" + "a" * 20_000)
    assert time.perf_counter() - started < 0.5


def reference_match(pattern: str, path: str) -> bool:
    """Glob matching segment by segment with fnmatch: the independent implementation."""
    wanted = [s for s in pattern.split("/") if s]
    given_ = [s for s in path.split("/") if s]
    if wanted and wanted[-1] == "**":
        wanted = wanted[:-1]
        if len(given_) < len(wanted):
            return False
        given_ = given_[: len(wanted)]
    elif len(wanted) != len(given_):
        return False
    return all(fnmatch.fnmatchcase(s, w.replace("{p}", "?*")) for w, s in zip(wanted, given_, strict=True))


# A segment that is exactly "**" means "the rest of the path" and may only come last.
pattern_segments = (
    st.lists(st.sampled_from(["a", "b", "*", "{p}"]), min_size=1, max_size=4)
    .map("".join)
    .filter(lambda s: s != "**")
)
small_segments = st.text(alphabet="ab", min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(pattern_segments, max_size=3), st.booleans(), st.lists(small_segments, max_size=4))
def test_matching_agrees_with_fnmatch_segment_by_segment(
    segments: list[str], subtree: bool, path_segments: list[str]
) -> None:
    pattern = as_path(segments + (["**"] if subtree else []))
    path = as_path(path_segments)
    assert Endpoint("GET", pattern).matches("GET", path) == reference_match(pattern, path)


def test_covers_reads_the_other_pattern_as_a_path() -> None:
    assert Endpoint("*", "/pets/*").covers(Endpoint("GET", "/pets/{id}"))
    assert Endpoint("GET", "/pets/**").covers(Endpoint("GET", "/pets/{id}/photos"))
    assert not Endpoint("GET", "/pets/*").covers(Endpoint("POST", "/pets/{id}"))
    assert not Endpoint("GET", "/pets/*").covers(Endpoint("*", "/pets/{id}"))
    assert not Endpoint("GET", "/pets").covers(Endpoint("GET", "/pets/{id}"))


# --- decisions -------------------------------------------------------------------------


@EXAMPLES
@given(clients, st.none() | st.tuples(methods, segment_lists))
def test_default_deny(client: ClientId, request_: tuple[str, list[str]] | None) -> None:
    method, path = (request_[0], as_path(request_[1])) if request_ else (None, None)
    assert not allowed(client, [], method, path)


@EXAMPLES
@given(clients, clients, st.none() | st.tuples(methods, segment_lists))
def test_a_right_for_one_client_never_serves_another(
    holder: ClientId, caller: ClientId, request_: tuple[str, list[str]] | None
) -> None:
    method, path = (request_[0], as_path(request_[1])) if request_ else (None, None)
    rights = [
        AccessRight(holder, SERVICE.service_code),
        AccessRight(holder, SERVICE.service_code, Endpoint("*", "/**")),
    ]
    assert allowed(holder, rights, method, path)
    assert allowed(caller, rights, method, path) == (caller == holder)


@EXAMPLES
@given(clients, codes)
def test_a_member_right_is_not_its_subsystems_and_the_reverse(client: ClientId, subsystem: str) -> None:
    member = client.member
    sub = ClientId(member.instance, member.member_class, member.member_code, subsystem)
    assert not allowed(sub, [AccessRight(member, SERVICE.service_code)])
    assert not allowed(member, [AccessRight(sub, SERVICE.service_code)])


@EXAMPLES
@given(clients, codes)
def test_rights_to_other_service_codes_do_not_apply(client: ClientId, code: str) -> None:
    rights = [AccessRight(client, code)]
    assert allowed(client, rights) == (code == SERVICE.service_code)


@EXAMPLES
@given(
    clients,
    st.lists(st.tuples(clients, st.none() | st.tuples(methods, segment_lists)), max_size=6),
    methods,
    segment_lists,
)
def test_the_decision_is_any_single_right_allowing(
    client: ClientId,
    grants: list[tuple[ClientId, tuple[str, list[str]] | None]],
    method: str,
    path: list[str],
) -> None:
    rights = [
        AccessRight(holder, SERVICE.service_code, Endpoint(e[0], as_path(e[1])) if e else None)
        for holder, e in grants
    ]
    whole = allowed(client, rights, method, as_path(path))
    assert whole == any(allowed(client, [right], method, as_path(path)) for right in rights)
    # Adding rights never takes access away.
    assert not whole or allowed(client, [*rights, AccessRight(client, "other")], method, as_path(path))


subjects = clients | st.builds(LocalGroupId, codes) | st.builds(GlobalGroupId, codes, codes)


@EXAMPLES
@given(
    clients,
    st.lists(
        st.tuples(subjects, st.sampled_from([SERVICE.service_code, "other"]), st.booleans()), max_size=8
    ),
    st.sets(clients, max_size=3),
)
def test_arranging_rights_by_client_never_changes_a_decision(
    client: ClientId,
    grants: list[tuple[ClientId | LocalGroupId | GlobalGroupId, str, bool]],
    group: set[ClientId],
) -> None:
    rights = [
        AccessRight(subject, code, Endpoint("GET", "/a/*") if narrow else None)
        for subject, code, narrow in grants
    ]
    in_global = lambda c, g: c in group  # noqa: E731
    local = {LocalGroupId(c.member_code): frozenset(group) for c in group}

    def decide(
        candidates: list[AccessRight] | tuple[AccessRight, ...], method: str | None, path: str | None
    ) -> bool:
        return is_allowed(
            client,
            SERVICE,
            candidates,
            method=method,
            path=path,
            global_group_member=in_global,
            local_groups=local,
        )

    arranged = ServiceRights.arrange(rights).candidates(client)
    for method, path in ((None, None), ("GET", "/a/b"), ("POST", "/a/b")):
        assert decide(arranged, method, path) == decide(rights, method, path)


def test_endpoint_rights_cover_only_their_rest_requests_and_never_soap() -> None:
    client = ClientId("EE", "COM", "1", "app")
    rights = [AccessRight(client, SERVICE.service_code, Endpoint("GET", "/persons/{id}"))]
    assert allowed(client, rights, "GET", "/persons/38001010000")
    assert not allowed(client, rights, "DELETE", "/persons/38001010000")
    assert not allowed(client, rights, "GET", "/persons")
    assert not allowed(client, rights)  # SOAP: no method, no path
    whole = [AccessRight(client, SERVICE.service_code)]
    assert allowed(client, whole) and allowed(client, whole, "DELETE", "/anything/at/all")


def test_local_groups_are_the_providers_and_exact() -> None:
    member = ClientId("EE", "COM", "1", "app")
    outsider = ClientId("EE", "COM", "2", "app")
    group = LocalGroupId("partners")
    rights = [AccessRight(group, SERVICE.service_code)]
    groups = {group: frozenset({member})}
    decide = lambda c, g: is_allowed(  # noqa: E731
        c, SERVICE, rights, global_group_member=NO_GLOBAL_GROUPS, local_groups=g
    )
    assert decide(member, groups)
    assert not decide(outsider, groups)
    assert not decide(member.member, groups)
    assert not decide(member, {})  # a group the provider does not have grants nothing


def test_global_groups_are_asked_of_the_global_configuration() -> None:
    client = ClientId("EE", "COM", "1", "app")
    group = GlobalGroupId("EE", "security-server-owners")
    asked: list[tuple[ClientId, GlobalGroupId]] = []

    def member_of(c: ClientId, g: GlobalGroupId) -> bool:
        asked.append((c, g))
        return c == client

    rights = [AccessRight(group, SERVICE.service_code)]
    assert is_allowed(client, SERVICE, rights, global_group_member=member_of, local_groups={})
    assert not is_allowed(client.member, SERVICE, rights, global_group_member=member_of, local_groups={})
    assert asked == [(client, group), (client.member, group)]
    assert subject_includes(group, client, global_group_member=member_of, local_groups={})


def test_rights_of_lists_what_covers_the_client() -> None:
    client = ClientId("EE", "COM", "1", "app")
    mine = AccessRight(client, "a")
    group = AccessRight(LocalGroupId("g"), "b", Endpoint("GET", "/x"))
    theirs = AccessRight(ClientId("EE", "COM", "2"), "a")
    found = rights_of(
        client,
        [mine, group, theirs],
        global_group_member=NO_GLOBAL_GROUPS,
        local_groups={LocalGroupId("g"): frozenset({client})},
    )
    assert found == [mine, group]


def test_method_without_path_is_a_caller_error() -> None:
    client = ClientId("EE", "COM", "1", "app")
    with pytest.raises(ValueError):
        allowed(client, [AccessRight(client, SERVICE.service_code)], "GET", None)
