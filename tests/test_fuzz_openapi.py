"""Every operation of /openapi.json fuzzed in-process by schemathesis, as an OU's credential (and member, where the
operation needs one): whatever it is sent, no answer is a 5xx, and every answer is what the document says (a
documented status, its content type, its schema). `make fuzz` runs many more examples (LEADPULSE_FUZZ_EXAMPLES)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from models.leads import ALIAS_KINDS
from tests.conftest import make_tenant
from tests.fakes import FakeHubSpot, FakeSlack
from tests.tenant_world import SLACK_APP, build_world, id_kind, member_headers
from webapp import create_app
from webapp.resources import stream as stream_resource

EXAMPLES = int(os.environ.get("LEADPULSE_FUZZ_EXAMPLES", "4"))  # per operation and kind of input
ONLY = os.environ.get("LEADPULSE_FUZZ_ONLY", "")  # e.g. "POST /import": only the operations whose label has it
STREAM_SECONDS = 1.0  # how long an event stream (GET /stream) is read before its answer is checked
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
HUBSPOT_TOKEN = "pat-fuzz-0123456789"
LOGOUT = "POST /auth/logout"


@pytest.fixture
def app(settings, clean, monkeypatch):
    """HubSpot and Slack are local fakes: a fuzzed token or target is never sent to the real services."""
    monkeypatch.setattr(stream_resource, "HEARTBEAT_SECONDS", 0.2)  # a stream's reads return within this
    with (
        FakeHubSpot(tokens=[HUBSPOT_TOKEN]) as hubspot,
        FakeSlack(client_id=SLACK_APP[0], client_secret=SLACK_APP[1]) as slack,
    ):
        monkeypatch.setenv("HUBSPOT_API_BASE", hubspot.url)  # the workers read their settings from the environment
        monkeypatch.setenv("SLACK_API_BASE", slack.base_url)
        app = create_app(dataclasses.replace(settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url))
        app.testing = True
        app.fakes = hubspot, slack
        yield app


def test_every_operation_answers_what_the_document_says_whatever_it_is_sent(app, settings, run_worker):
    """A fresh OU holding one object of each kind: valid inputs go to its real objects (so updates, publishing and
    deletions run, deletions last), invalid ones anywhere."""
    hubspot, slack = app.fakes
    tenant = make_tenant(settings, org="Fuzz", unit="Fuzzed", email="owner.fuzz@example.com")
    world = build_world(
        app,
        tenant,
        {"unit": "fuzz", "org": "fuzzorg"},
        run_worker,
        leads=3,
        hubspot=hubspot,
        hubspot_token=HUBSPOT_TOKEN,
        slack=slack,
    )
    bearer = member_headers(app.test_client(use_cookies=False), tenant)["Authorization"]
    member = ({"Authorization": bearer}, {"activeOu": tenant.unit_id})
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    deletions = [op for op in operations if op.method.upper() == "DELETE"][::-1]  # a rule before its ruleset
    last = [*deletions, *(op for op in operations if op.label == LOGOUT)]  # it ends the member's login
    # a path id equal to another operation's fixed segment (GET /events/{lead_id} with "export") is that operation
    fixed = {(op.method.upper(), op.path) for op in operations if not op.path_parameters}
    failures = []
    for operation in [op for op in operations if op not in last] + last:
        if ONLY not in operation.label:
            continue
        raw = operation.definition.raw
        auth = member if "403" in raw["responses"] else (tenant.auth, {})  # a member's operation, or any
        names = [p.name for p in operation.path_parameters]
        real = {name: world.ids[kind] for name in names if (kind := id_kind(operation.path, name))}
        runs = [(GenerationMode.POSITIVE, real if len(real) == len(names) else {})]
        if "requestBody" in raw or any(p["in"] == "query" for p in raw.get("parameters", [])) or names:
            runs.append((GenerationMode.NEGATIVE, {}))
        for mode, path_parameters in runs:
            failure = fuzz(operation, mode, auth, path_parameters, fixed)
            if failure:
                failures.append(f"{operation.label} ({mode.value}): {failure}")
    assert not failures, "\n\n".join(failures)


def fuzz(operation, mode, auth: tuple[dict, dict], path_parameters: dict, fixed: set) -> str | None:
    guarded = bool(operation.definition.raw.get("security"))

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None))
    def run(case):
        assume((case.method.upper(), case.formatted_path) not in fixed)
        headers, cookies = auth
        response = case.call(headers={**(case.headers or {}), **headers}, cookies=cookies, timeout=STREAM_SECONDS)
        # a lost login leaves nothing but 401s to check: fail on it, not pass
        if response.status_code == 401 and guarded and operation.label != LOGOUT:
            raise AssertionError(f"the fuzz's own credentials were refused: {response.text[:300]}")
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # nothing the document lets it make invalid here (every string is a valid path id)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis says which check failed, and how to reproduce it
        return str(exc)[:3000]
    return None


CSV_COLUMNS = ["event_type", "lead_id", "timestamp", "metadata", "event_id", *ALIAS_KINDS]
CELL = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),  # anything UTF-8 can carry, NUL and quotes too
    st.sampled_from(["page_view", "lead-1", "ada@example.com", "2026-01-01T00:00:00Z", '{"a": 1}', "[1]", "NaN"]),
)


def test_a_csv_import_of_any_rows_is_answered_as_documented(api):
    """The document cannot say what a CSV holds: its rows are fuzzed here, each accepted or reported, never a 500
    (the suite holds every answer to the document)."""

    @settings(max_examples=EXAMPLES * 10, derandomize=True, deadline=None, database=None, print_blob=False)
    @given(
        header=st.lists(st.sampled_from(CSV_COLUMNS), min_size=1, unique=True),
        rows=st.lists(st.lists(CELL, max_size=len(CSV_COLUMNS) + 1), max_size=6),
    )
    def run(header, rows):
        out = io.StringIO()
        csv.writer(out).writerows([header, *rows])
        upload = {"file": (io.BytesIO(out.getvalue().encode()), "rows.csv", "text/csv")}
        r = api.post("/import", data=upload, content_type="multipart/form-data")
        assert r.status_code in (202, 400), r.get_data(as_text=True)
        if r.status_code == 202:
            counted = r.json["accepted"] + r.json["duplicate"] + r.json["rejected"]
            assert counted == len([row for row in rows if row]), r.json  # a blank line is no row

    run()
