"""The history API keeps its OpenAPI contract when it reads the record in PostgreSQL (a
real server): any query schemathesis makes is a 200 with stories as documented, a 400
naming the bad parameter or a 404, never a 5xx."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from relay.app import create_app
from relay.settings import Settings
from tests.conftest import trigger
from tests.pg_rows import entries_of, migrated, write


@pytest.fixture
def record_schema(settings: Settings, pg_dsn: str) -> Any:
    migrated(pg_dsn)
    fake = fakeredis.FakeRedis(decode_responses=True)
    app = create_app(replace(settings, history_dsn=pg_dsn, ui_open_view=True), client=fake)
    web = app.test_client()
    for n in range(6):
        assert web.post("/v2/enqueue", json=trigger(f"disk {n}", dedup_key=f"d{n % 2}"),
                        ).status_code == 202
    write(pg_dsn, entries_of(fake, "pdr:history")[:4], settings.key_names)  # the rest: tail
    schema = schemathesis.openapi.from_wsgi("/openapi.yaml", app, config=SchemathesisConfig())
    return schema.include(path_regex="^/api/v1/events")


def test_the_history_api_keeps_its_contract_on_the_record(record_schema: Any) -> None:
    operations = [found.ok() for found in record_schema.get_all_operations()]
    assert len(operations) == 2  # the search and one story

    for operation in operations:
        @given(operation.as_strategy())
        @hypothesis_settings(max_examples=60, deadline=None, derandomize=True,
                             suppress_health_check=list(HealthCheck))
        def keeps(case: Any) -> None:
            case.call_and_validate(checks=[
                checks.not_a_server_error, checks.status_code_conformance,
                checks.content_type_conformance, checks.response_schema_conformance,
                checks.response_headers_conformance,
            ])

        keeps()
