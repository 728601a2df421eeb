"""templates: filling ``{{ name }}`` placeholders so that no value can change a query's shape.

Covers every built-in variable and metric args, optional whitespace in the
braces, escaping by where the placeholder stands (``"…"``, ``'…'``, ```…```,
outside quotes, comments), injection attempts through names and args, unknown
and missing variables, args that would override a built-in, and the PromQL
durations. That Prometheus itself reads escaped values back unchanged is
checked against the real server in tests/test_metrics_contract.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelrollout import templates
from modelrollout.templates import MissingValue, TemplateError, render

STANDARD = templates.variables(
    namespace="models",
    inference_service="fraud",
    stable_revision="fraud-predictor-00001",
    canary_revision="fraud-predictor-00002",
    interval="1m",
    since_canary_start_seconds=92.1,
    args={"quantile": "0.99", "route": "/v1/models/fraud:predict"},
)


@pytest.mark.parametrize(
    ("query", "rendered"),
    [
        ('a{namespace_name="{{ namespace }}"}', 'a{namespace_name="models"}'),
        ('a{isvc="{{ inferenceService }}"}', 'a{isvc="fraud"}'),
        ('a{revision_name="{{ stableRevision }}"}', 'a{revision_name="fraud-predictor-00001"}'),
        ('a{revision_name="{{ canaryRevision }}"}', 'a{revision_name="fraud-predictor-00002"}'),
        ("rate(a[{{ interval }}])", "rate(a[60s])"),
        ("increase(a[{{ sinceCanaryStart }}])", "increase(a[93s])"),
        ("histogram_quantile({{ quantile }}, b)", "histogram_quantile(0.99, b)"),
        ('a{path="{{ route }}"}', 'a{path="/v1/models/fraud:predict"}'),
        ("{{namespace}} {{  namespace  }} {{\tnamespace\t}}", "models models models"),
        ("no placeholders at all", "no placeholders at all"),
    ],
)
def test_each_variable_is_filled_in(query: str, rendered: str) -> None:
    assert render(query, STANDARD) == rendered


def test_count_queries_get_the_revision_of_the_arm_they_count() -> None:
    query = 'a{revision_name="{{ revision }}"}'

    canary = render(query, templates.for_arm(STANDARD, templates.CANARY_REVISION))
    stable = render(query, templates.for_arm(STANDARD, templates.STABLE_REVISION))

    assert canary == 'a{revision_name="fraud-predictor-00002"}'
    assert stable == 'a{revision_name="fraud-predictor-00001"}'


def test_revision_is_not_defined_outside_count_queries() -> None:
    with pytest.raises(MissingValue, match="revision has no value yet"):
        render('a{revision_name="{{ revision }}"}', STANDARD)


@pytest.mark.parametrize(
    ("query", "value", "rendered"),
    [
        ('a{l="{{ arg }}"}', 'say "hi"', 'a{l="say \\"hi\\""}'),
        ('a{l="{{ arg }}"}', "back\\slash", 'a{l="back\\\\slash"}'),
        ('a{l="{{ arg }}"}', 'x"} or vector(1) #', 'a{l="x\\"} or vector(1) #"}'),
        ('a{l="{{ arg }}"}', "x\\", 'a{l="x\\\\"}'),
        ('a{l="{{ arg }}"}', "it's", 'a{l="it\'s"}'),
        ('a{l="{{ arg }}"}', "{{ namespace }}", 'a{l="{{ namespace }}"}'),
        ("a{l='{{ arg }}'}", "it's", "a{l='it\\'s'}"),
        ("a{l='{{ arg }}'}", 'say "hi"', "a{l='say \"hi\"'}"),
        ("a{l=`{{ arg }}`}", "raw\\d+", "a{l=`raw\\d+`}"),
        ('a{l=~"{{ arg }}"}', "5\\d\\d", 'a{l=~"5\\\\d\\\\d"}'),
        ('a{l="x\\\\{{ arg }}"}', "y", 'a{l="x\\\\y"}'),
        ('a{l="esc \\" {{ arg }}"}', '"', 'a{l="esc \\" \\""}'),
    ],
)
def test_values_are_escaped_for_the_string_they_stand_in(
    query: str, value: str, rendered: str
) -> None:
    assert render(query, {**STANDARD, "arg": value}) == rendered


@pytest.mark.parametrize(
    "value",
    [
        'x"} or vector(1) #',
        "x} or vector(1) {",
        "fraud or vector(1)",
        "Fraud",
        "fraud_1",
        "fraud\n",
        "-fraud",
        "a" * 254,
        "",
    ],
)
@pytest.mark.parametrize(
    "name",
    ["namespace", "inferenceService", "stableRevision", "canaryRevision"],
)
def test_a_name_that_is_not_a_kubernetes_name_is_refused_even_inside_quotes(
    name: str, value: str
) -> None:
    with pytest.raises(TemplateError, match=f"template variable {name}: .* not a Kubernetes name"):
        render(f'a{{l="{{{{ {name} }}}}"}}', {**STANDARD, name: value})


@pytest.mark.parametrize("value", ["x.y-z", "fraud-predictor-00002", "a" * 253, "0", "a.b.c"])
def test_kubernetes_names_are_accepted_outside_quotes_too(value: str) -> None:
    assert render("{{ namespace }}", {**STANDARD, "namespace": value}) == value


@pytest.mark.parametrize(
    "value",
    [
        "1) or vector(1",
        "x} or vector(1) {",
        "0.99 or up",
        'a"',
        "a b",
        "",
        "1m]",
        "up{}",
    ],
)
def test_outside_quotes_an_arg_must_be_a_single_token(value: str) -> None:
    with pytest.raises(TemplateError, match=r"outside quotes: the value .* is not a single"):
        render("histogram_quantile({{ arg }}, b)", {**STANDARD, "arg": value})


@pytest.mark.parametrize(
    "value", ["0.99", "1e-3", "-2", ".5", "5m", "1h30m", "http_requests_total", "job:up:sum"]
)
def test_outside_quotes_numbers_durations_and_names_are_accepted(value: str) -> None:
    assert render("f({{ arg }})", {**STANDARD, "arg": value}) == f"f({value})"


@pytest.mark.parametrize("value", ["line\nbreak", "tab\there", "nul\x00", "bell\x07", "del\x7f"])
@pytest.mark.parametrize("query", ['a{l="{{ arg }}"}', "a{l='{{ arg }}'}", "a{l=`{{ arg }}`}"])
def test_control_characters_are_refused_everywhere(query: str, value: str) -> None:
    with pytest.raises(TemplateError, match="contains a control character"):
        render(query, {**STANDARD, "arg": value})


def test_a_backtick_cannot_end_a_raw_string() -> None:
    with pytest.raises(TemplateError, match=r"inside `…`: the value .* contains a backtick"):
        render("a{l=`{{ arg }}`}", {**STANDARD, "arg": "x` or vector(1) #"})


def test_a_placeholder_right_after_a_backslash_is_refused() -> None:
    """The template's backslash would escape the first character of the value."""
    with pytest.raises(TemplateError, match="may not follow a backslash"):
        render('a{l="\\{{ arg }}"}', {**STANDARD, "arg": '"'})


def test_quotes_in_comments_do_not_open_strings() -> None:
    query = "# the canary's rate\nrate(a[{{ interval }}]) # don't {{ quantile }}\n+ {{ quantile }}"

    assert render(query, STANDARD) == "# the canary's rate\nrate(a[60s]) # don't 0.99\n+ 0.99"


def test_placeholders_in_comments_are_checked_like_bare_ones() -> None:
    with pytest.raises(TemplateError, match="outside quotes"):
        render("a # {{ arg }}", {**STANDARD, "arg": "x y"})


def test_an_unknown_variable_is_named_with_the_known_ones() -> None:
    with pytest.raises(TemplateError) as caught:
        render('a{l="{{ canaryRevison }}", m="{{ nmespace }}"}', STANDARD)

    message = str(caught.value)
    assert message.startswith("unknown template variables canaryRevison, nmespace; known: ")
    assert message.endswith(
        "known: canaryRevision, inferenceService, interval, namespace, quantile, route, "
        "sinceCanaryStart, stableRevision"
    )
    assert not isinstance(caught.value, MissingValue)


def test_an_unknown_variable_is_an_invalid_spec() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{ nope }}", STANDARD)

    assert caught.value.reason == "InvalidSpec"


@pytest.mark.parametrize("query", ["{{ 1x }}", "{{ a-b }}", "{{ }}", "{{ namespace }", "{{x.y}}"])
def test_a_malformed_placeholder_is_refused(query: str) -> None:
    with pytest.raises(TemplateError, match="malformed placeholder"):
        render(query, STANDARD)


def test_a_revision_kserve_has_not_named_yet_is_missing_not_unknown() -> None:
    without = templates.variables(
        namespace="models",
        inference_service="fraud",
        stable_revision="fraud-predictor-00001",
        canary_revision=None,
        interval="30s",
        since_canary_start_seconds=0,
    )

    with pytest.raises(MissingValue, match="canaryRevision has no value yet"):
        render('a{r="{{ canaryRevision }}"}', without)
    with pytest.raises(MissingValue, match="canaryRevision has no value yet"):
        templates.for_arm(without, templates.CANARY_REVISION)
    assert render("a[{{ sinceCanaryStart }}]", without) == "a[1s]"


@pytest.mark.parametrize("name", sorted(templates.BUILTINS))
def test_args_may_not_override_a_built_in(name: str) -> None:
    with pytest.raises(TemplateError, match=f"metric arg {name!r} would override"):
        templates.variables(
            namespace="models",
            inference_service="fraud",
            stable_revision=None,
            canary_revision=None,
            interval="30s",
            since_canary_start_seconds=10,
            args={name: "x"},
        )


@pytest.mark.parametrize("name", ["a-b", "1x", "", "a b"])
def test_args_must_be_variable_names(name: str) -> None:
    with pytest.raises(TemplateError, match="is not a variable name"):
        templates.variables(
            namespace="models",
            inference_service="fraud",
            stable_revision=None,
            canary_revision=None,
            interval="30s",
            since_canary_start_seconds=10,
            args={name: "x"},
        )


@pytest.mark.parametrize(
    ("interval", "since", "interval_text", "since_text"),
    [
        ("1m", 93, "60s", "93s"),
        ("30s", 92.01, "30s", "93s"),
        ("1m30s", 0, "90s", "1s"),
        ("1.5m", 0.2, "90s", "1s"),
        ("500ms", 3600, "500ms", "3600s"),
        ("1.5ms", 59.999, "2ms", "60s"),
        ("2h", 7200.5, "7200s", "7201s"),
    ],
)
def test_durations_are_given_to_promql_in_seconds_or_milliseconds(
    interval: str, since: float, interval_text: str, since_text: str
) -> None:
    made = templates.variables(
        namespace="n",
        inference_service="i",
        stable_revision=None,
        canary_revision=None,
        interval=interval,
        since_canary_start_seconds=since,
    )

    assert (made["interval"], made["sinceCanaryStart"]) == (interval_text, since_text)


@pytest.mark.parametrize("interval", ["0s", "soon", "1d"])
def test_an_interval_that_is_no_positive_duration_is_refused(interval: str) -> None:
    with pytest.raises(TemplateError):
        templates.variables(
            namespace="n",
            inference_service="i",
            stable_revision=None,
            canary_revision=None,
            interval=interval,
            since_canary_start_seconds=1,
        )


@pytest.mark.parametrize("value", ["1m; drop", "1m]) or vector(1", "60"])
def test_duration_variables_must_be_durations(value: str) -> None:
    with pytest.raises(TemplateError, match=r"template variable interval: .* is not a duration"):
        render("rate(a[{{ interval }}])", {**STANDARD, "interval": value})


# ---------------------------------------------------------------- a property


def _promql_string(literal: str) -> str:
    """Decode a double-quoted PromQL string literal that starts at ``literal[0]`` (which
    must be the whole literal: the test fails if the string ends early)."""
    assert literal[0] == '"'
    out: list[str] = []
    i = 1
    while i < len(literal):
        char = literal[i]
        if char == "\\":
            out.append({"n": "\n", "t": "\t"}.get(literal[i + 1], literal[i + 1]))
            i += 2
            continue
        if char == '"':
            assert i == len(literal) - 1, f"the string ended early at {i}: {literal!r}"
            return "".join(out)
        out.append(char)
        i += 1
    raise AssertionError(f"unterminated string {literal!r}")


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80))
def test_any_arg_inside_double_quotes_stays_one_string_with_its_exact_value(value: str) -> None:
    rendered = render('"{{ arg }}"', {**STANDARD, "arg": value})

    assert _promql_string(rendered) == value
    assert not re.search(r"\{\{", rendered) or "{{" in value
