"""Request signing and the I/O-free verification of signed requests."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol import (
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_HEADERS,
    SIGNATURE_WINDOW_S,
    TIMESTAMP_HEADER,
    BadSignature,
    MalformedSignatureHeader,
    MissingSignatureHeader,
    NonceCache,
    ProtocolError,
    ReplayedNonce,
    SignatureError,
    SignedHeaders,
    StaleTimestamp,
    UnknownNode,
    canonical_path,
    canonical_query,
    canonical_string,
    check_timestamp,
    parse_signature_headers,
    request_signature,
    sign_headers,
    signature_headers,
    signature_matches,
    verify_request,
)

SECRET = "s3cret-s3cret-s3cret"
NOW_S = 1_700_000_000.0
REQUEST: dict[str, Any] = {
    "method": "POST",
    "path": "/v1/ingest",
    "query": "store_id=367",
    "body": b"\x81\xa1v\x01",
}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers_for(nonce: str = "n" * 16, at: float = NOW_S, **request: Any) -> dict[str, str]:
    return sign_headers("node-1", SECRET, now_s=at, nonce=nonce, **{**REQUEST, **request})


def verify(headers: dict[str, str], *, now_s: float = NOW_S, **request: Any) -> None:
    verify_request(headers, SECRET, now_s=now_s, nonces=NonceCache(), **{**REQUEST, **request})


def test_canonical_string_is_the_documented_lines() -> None:
    text = canonical_string(
        method="get", path="/v1/master", query="a=1", timestamp="17", nonce="abc", body=b"x"
    )
    assert text.split("\n") == [
        "GET",
        "/v1/master",
        "a=1",
        "17",
        "abc",
        hashlib.sha256(b"x").hexdigest(),
    ]


def test_canonical_query_sorts_and_percent_encodes() -> None:
    assert canonical_query({"b": "2 3", "a": "x/y"}) == "a=x%2Fy&b=2%203"
    assert canonical_query([("z", "1"), ("a", "&")]) == "a=%26&z=1"


@pytest.mark.parametrize(
    ("as_given", "as_received"),
    [
        ("/v1/cards/12%2034/lookup", "/v1/cards/12%2034/lookup"),
        ("/v1/cards/12 34/lookup", "/v1/cards/12%2034/lookup"),  # a client that quotes later
        ("/v1/cards/1%272/lookup", "/v1/cards/1'2/lookup"),  # a client that unquotes a '
        ("/v1/cards/%C3%A9/lookup", "/v1/cards/%c3%a9/lookup"),  # hex case
        ("/v1/cards/a%2Fb/lookup", "/v1/cards/a%2fb/lookup"),
        ("/v1/cards/50%25/lookup", "/v1/cards/50%25/lookup"),
        ("/v1/cards/%32%39/lookup", "/v1/cards/29/lookup"),  # an unreserved char quoted
    ],
)
def test_a_path_signs_the_same_however_its_client_encoded_it(
    as_given: str, as_received: str
) -> None:
    assert canonical_path(as_given) == canonical_path(as_received)
    verify(headers_for(path=as_given), path=as_received)


def test_canonical_path_keeps_a_quoted_slash_apart_from_a_slash() -> None:
    assert canonical_path("/v1/cards/a%2Fb/lookup") == "/v1/cards/a%2Fb/lookup"
    assert canonical_path("/v1/cards/a/b/lookup") == "/v1/cards/a/b/lookup"
    with pytest.raises(BadSignature):
        verify(headers_for(path="/v1/cards/a%2Fb/lookup"), path="/v1/cards/a/b/lookup")
    # Identifier paths (what every older node signs) are their own canonical form.
    for path in ("/v1/ingest", "/v1/customers/2900000000013/balance", "/v1/a:b/c_d-e.f~g"):
        assert canonical_path(path) == path
    assert canonical_path("/v1/%FF/%00") == "/v1/%FF/%00"  # not UTF-8: still one form


def test_signature_matches_compares_exactly() -> None:
    sig = request_signature(SECRET, timestamp="1", nonce="n", **REQUEST)
    assert signature_matches(sig, sig)
    assert not signature_matches(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    assert not signature_matches(sig, "")


def test_a_signed_request_verifies_and_the_parse_keeps_every_header() -> None:
    headers = headers_for()
    parsed = parse_signature_headers(headers)
    assert parsed == SignedHeaders(
        node_id="node-1",
        timestamp=str(int(NOW_S)),
        nonce="n" * 16,
        signature=headers[SIGNATURE_HEADER],
    )
    verify(headers)


def test_signature_header_is_compared_case_insensitively() -> None:
    headers = headers_for()
    headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].upper()
    verify(headers)


def test_signature_headers_picks_only_the_four() -> None:
    assert signature_headers({"Content-Type": "x"}) is None
    assert signature_headers({NONCE_HEADER: "n", "Other": "y"}) == {NONCE_HEADER: "n"}


@pytest.mark.parametrize("name", SIGNATURE_HEADERS)
def test_a_missing_or_empty_header_is_named(name: str) -> None:
    for value in (None, ""):
        headers = headers_for()
        if value is None:
            del headers[name]
        else:
            headers[name] = value
        with pytest.raises(MissingSignatureHeader) as caught:
            parse_signature_headers(headers)
        assert caught.value.header == name
        assert str(caught.value) == f"header {name}: missing; signed requests carry all four"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (NODE_HEADER, "-starts-with-dash", "not a node id"),
        (NODE_HEADER, "x" * 65, "not a node id"),
        (TIMESTAMP_HEADER, "12.5", "expected Unix seconds"),
        (TIMESTAMP_HEADER, "1" * 13, "expected Unix seconds"),
        (TIMESTAMP_HEADER, "١٢٣", "expected Unix seconds"),
        (NONCE_HEADER, "short", "expected 16..64"),
        (NONCE_HEADER, "n" * 15 + "!", "expected 16..64"),
        (SIGNATURE_HEADER, "ab" * 31, "expected 64 hex digits"),
        (SIGNATURE_HEADER, "zz" * 32, "expected 64 hex digits"),
    ],
)
def test_a_malformed_header_is_named(name: str, value: str, problem: str) -> None:
    headers = headers_for()
    headers[name] = value
    with pytest.raises(MalformedSignatureHeader) as caught:
        parse_signature_headers(headers)
    assert caught.value.header == name
    assert str(caught.value).startswith(f"header {name}: {problem}")
    assert isinstance(caught.value, SignatureError) and isinstance(caught.value, ProtocolError)


@pytest.mark.parametrize("skew_s", [-SIGNATURE_WINDOW_S, 0, SIGNATURE_WINDOW_S])
def test_timestamps_within_the_window_pass(skew_s: int) -> None:
    check_timestamp(str(int(NOW_S) + skew_s), now_s=NOW_S)


@pytest.mark.parametrize("skew_s", [-SIGNATURE_WINDOW_S - 1, SIGNATURE_WINDOW_S + 1])
def test_timestamps_outside_the_window_name_both_clocks(skew_s: int) -> None:
    timestamp = str(int(NOW_S) + skew_s)
    with pytest.raises(StaleTimestamp) as caught:
        check_timestamp(timestamp, now_s=NOW_S, receiver="Center", sender="node")
    assert caught.value.header == TIMESTAMP_HEADER
    assert caught.value.skew_s == -skew_s
    assert str(caught.value) == (
        f"header {TIMESTAMP_HEADER}: {timestamp} is {-skew_s:+d} s from the Center's clock "
        f"(allowed ±{SIGNATURE_WINDOW_S} s); check the node's clock"
    )


def test_a_stale_request_is_refused_before_its_signature_is_checked() -> None:
    headers = headers_for(at=NOW_S - 1000)
    headers[SIGNATURE_HEADER] = "0" * 64
    with pytest.raises(StaleTimestamp):
        verify(headers)


def test_a_wrong_secret_or_tampered_body_is_a_bad_signature() -> None:
    forged = sign_headers("node-1", "guess", now_s=NOW_S, nonce="n" * 16, **REQUEST)
    with pytest.raises(BadSignature) as caught:
        verify(forged)
    assert str(caught.value) == f"header {SIGNATURE_HEADER}: does not match the request"
    with pytest.raises(BadSignature):
        verify(headers_for(), body=b"other")


def test_a_replay_is_refused_and_a_bad_signature_does_not_burn_the_nonce() -> None:
    nonces = NonceCache()
    headers = headers_for()
    forged = {**headers, SIGNATURE_HEADER: "0" * 64}
    with pytest.raises(BadSignature):
        verify_request(forged, SECRET, now_s=NOW_S, nonces=nonces, **REQUEST)
    verify_request(headers, SECRET, now_s=NOW_S, nonces=nonces, **REQUEST)
    with pytest.raises(ReplayedNonce) as caught:
        verify_request(headers, SECRET, now_s=NOW_S + 1, nonces=nonces, **REQUEST)
    assert caught.value.header == NONCE_HEADER and "replay" in str(caught.value)


def test_verify_request_checks_form_then_node_then_signature() -> None:
    nonces = NonceCache()
    headers = headers_for()
    bad = {**headers, NONCE_HEADER: "short", SIGNATURE_HEADER: "0" * 64}
    with pytest.raises(MalformedSignatureHeader):
        verify_request(bad, None, now_s=NOW_S, nonces=nonces, **REQUEST)
    with pytest.raises(UnknownNode) as caught:
        verify_request(headers, None, now_s=NOW_S, nonces=nonces, **REQUEST)
    assert str(caught.value) == f"header {NODE_HEADER}: unknown node 'node-1'; enrol it first"
    with pytest.raises(BadSignature):
        verify_request(headers, "other", now_s=NOW_S, nonces=nonces, **REQUEST)
    signed = verify_request(headers, SECRET, now_s=NOW_S, nonces=nonces, **REQUEST)
    assert signed.node_id == "node-1"
    assert len(nonces) == 1


def test_nonce_cache_uses_its_injected_clock() -> None:
    clock = FakeClock(100.0)
    cache = NonceCache(window_s=10, clock=clock)
    assert cache.add("n", "a")
    clock.now = 119.0
    assert not cache.add("n", "a")
    assert cache.add("m", "a")  # nonces are per node
    clock.now = 120.5
    assert cache.add("n", "a")  # forgotten after twice the window


def test_nonce_cache_memory_is_bounded_oldest_first() -> None:
    cache = NonceCache(window_s=10, max_entries=3, clock=FakeClock())
    for nonce in "abcde":
        assert cache.add("n", nonce)
    assert len(cache) == 3
    assert cache.add("n", "a")  # evicted, so accepted again
    assert not cache.add("n", "e")


def test_nonce_cache_refuses_a_useless_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        NonceCache(max_entries=0)


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_request = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        "path": _text.map(lambda s: "/" + s),
        "query": st.dictionaries(_text, _text, max_size=3).map(canonical_query),
        "body": st.binary(max_size=64),
        "at": st.integers(int(NOW_S) - SIGNATURE_WINDOW_S, int(NOW_S) + SIGNATURE_WINDOW_S),
        "nonce": st.from_regex(r"\A[A-Za-z0-9_-]{16,64}\Z"),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    signed=_request,
    received=_request,
    pick=st.sets(st.sampled_from([*sorted(REQUEST), "at", "nonce"])),
)
def test_a_signature_verifies_iff_the_request_is_unchanged(
    signed: dict[str, Any], received: dict[str, Any], pick: set[str]
) -> None:
    """Take some fields from another request: it verifies exactly when none of them differ."""
    actual = {**signed, **{k: received[k] for k in pick}}
    headers = sign_headers(
        "node-1",
        SECRET,
        now_s=float(signed["at"]),
        nonce=signed["nonce"],
        **{k: signed[k] for k in REQUEST},
    )
    # What arrives: the received timestamp and nonce headers, the received request parts.
    headers[TIMESTAMP_HEADER] = str(actual["at"])
    headers[NONCE_HEADER] = actual["nonce"]
    unchanged = actual == signed
    try:
        verify_request(
            headers,
            SECRET,
            now_s=NOW_S,
            nonces=NonceCache(),
            **{k: actual[k] for k in REQUEST},
        )
    except BadSignature:
        assert not unchanged
    else:
        assert unchanged
