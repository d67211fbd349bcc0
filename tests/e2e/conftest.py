"""Fixtures of the end-to-end tests: the real code location and a throwaway Dagster instance."""

import dagster as dg
import pytest

from smartbuy_pipeline.definitions import defs


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


@pytest.fixture()
def instance():
    with dg.instance_for_test() as inst:
        yield inst
