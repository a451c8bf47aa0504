"""Properties of ``classify`` and the builders: total on any JSON value, and builders classify back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.jsonio import JsonValue
from acpd.protocol.jsonrpc import Invalid, Kind, RequestId
from tests.strategies import json_scalars, json_values, property_settings

PROPERTY_SETTINGS = property_settings(200)

request_ids = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=10)
structured_params = st.dictionaries(st.text(max_size=6), json_values, max_size=3) | st.lists(json_values, max_size=3)
methods = st.text(min_size=1, max_size=20)
# objects built from JSON-RPC's own keys, each present or not, with right or wrong values
message_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]),
        "id": request_ids | json_values,
        "method": methods | json_values,
        "params": structured_params | json_values,
        "result": json_values,
        "error": st.fixed_dictionaries({"code": st.integers() | json_values, "message": st.text() | json_values})
        | json_values,
    },
)


def valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


@PROPERTY_SETTINGS
@given(value=json_values | message_like)
def test_classify_never_raises_and_only_offers_valid_ids(value: JsonValue) -> None:
    verdict = jsonrpc.classify(value)
    assert isinstance(verdict, Kind | Invalid)
    if isinstance(verdict, Invalid):
        assert verdict.reason
        if verdict.id is not None:
            assert valid_id(verdict.id)
            assert isinstance(value, dict)
            assert value["id"] == verdict.id


@PROPERTY_SETTINGS
@given(value=message_like)
def test_a_message_classified_as_a_kind_has_the_fields_of_that_kind(value: JsonValue) -> None:
    verdict = jsonrpc.classify(value)
    if verdict is Kind.REQUEST:
        assert valid_id(value["id"])
    if verdict in (Kind.REQUEST, Kind.NOTIFICATION):
        assert isinstance(value["method"], str)
        assert value["method"]
        assert value.get("params") is None or isinstance(value["params"], dict | list)
    if verdict is Kind.NOTIFICATION:
        assert "id" not in value
    if verdict is Kind.RESPONSE:
        assert value["id"] is None or valid_id(value["id"])
        assert "result" in value or "error" in value


@PROPERTY_SETTINGS
@given(msg_id=request_ids, method=methods, params=st.none() | structured_params)
def test_built_requests_and_notifications_classify_as_such_after_a_round_trip(
    msg_id: RequestId, method: str, params: JsonValue
) -> None:
    request = jsonio.loads(jsonio.dumps(jsonrpc.request(msg_id, method, params)))
    notification = jsonio.loads(jsonio.dumps(jsonrpc.notification(method, params)))
    assert jsonrpc.classify(request) is Kind.REQUEST
    assert jsonrpc.classify(notification) is Kind.NOTIFICATION
    assert request["id"] == msg_id
    assert type(request["id"]) is type(msg_id)


@PROPERTY_SETTINGS
@given(
    msg_id=request_ids | st.none(),
    result=json_values,
    code=st.integers(min_value=-(2**31), max_value=2**31),
    message=st.text(max_size=20),
    data=json_values,
)
def test_built_responses_classify_as_responses(
    msg_id: RequestId | None, result: JsonValue, code: int, message: str, data: JsonValue
) -> None:
    assert jsonrpc.classify(jsonrpc.result_response(msg_id, result)) is Kind.RESPONSE
    error = {"code": code, "message": message, "data": data}
    assert jsonrpc.classify(jsonrpc.error_response(msg_id, error)) is Kind.RESPONSE


@PROPERTY_SETTINGS
@given(value=json_scalars | st.lists(json_values, max_size=3))
def test_anything_but_an_object_is_invalid_without_an_id(value: JsonValue) -> None:
    verdict = jsonrpc.classify(value)
    assert isinstance(verdict, Invalid)
    assert verdict.id is None
