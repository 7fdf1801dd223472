"""Property-based fuzzing of the MM client API from its own OpenAPI document (schemathesis).

Every generated request, valid or not, must get an answer that is not a 5xx: bad input is a 4xx
that names the problem. Runs in-process against the WSGI app, on the test database, with a real
client key and data in every state (seed_demo), so the handlers' real code paths are reached.
"""

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.factories import make_api_key
from trading.models import Client


@pytest.fixture
def demo_key(db, settings):
    settings.DEBUG = True  # seed_demo as on the embedded default
    settings.MM_API_RATE_PER_MINUTE = 1_000_000  # the fuzzer is not testing the rate limit
    call_command("seed_demo", stdout=open("/dev/null", "w"))
    return make_api_key(Client.objects.get(name="demo:vertex"))


# Generating the schema touches no database, so it can load at collection time.
@pytest.fixture
def keep_test_connection():
    """Calling the WSGI app directly fires request_started/finished, whose close_old_connections
    would close the test transaction's connection (PostgreSQL); Django's test client unhooks it
    the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).include(path_regex=r"^/api/v1/")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_of_any_shape_is_a_server_error(case, demo_key, keep_test_connection):
    case.call_and_validate(headers={"X-API-Key": demo_key}, checks=[not_a_server_error])
