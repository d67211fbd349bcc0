"""Verdicts of the app-health checks (smartbuy_pipeline.domain.app_health)."""

from smartbuy_pipeline.domain.app_health import FeedProbe, judge_feed, judge_signups, markdown_table


def test_feed_probe_failure_reasons():
    assert FeedProbe("h", 3).failure is None
    assert FeedProbe("h", 0, matching_offers=0).failure is None  # rightly empty
    assert FeedProbe("h", 0).failure is None  # empty, nothing looked up
    assert FeedProbe("h", 0, matching_offers=2).failure == "empty feed while 2 eligible offer(s) match its wishes"
    assert FeedProbe("h", 0, error="boom (SQLSTATE P0001)").failure == (
        "fn_get_feed_candidates raised: boom (SQLSTATE P0001)")


def test_judge_feed():
    verdict = judge_feed([FeedProbe("a", 2), FeedProbe("b", 0, matching_offers=1), FeedProbe("c", 0, error="x")])
    assert not verdict.passed
    assert (verdict.households_checked, verdict.candidates) == (3, 2)
    assert [h for h, _ in verdict.failures] == ["b", "c"]
    assert judge_feed([]).passed  # no household has an active wish


def test_judge_signups():
    ok = judge_signups(0, "O")
    assert ok.passed and ok.trigger_state == "enabled" and ok.reasons == []
    assert judge_signups(0, "A").passed
    broken = judge_signups(3, "D")
    assert not broken.passed
    assert broken.reasons == ["3 auth user(s) without profile or household membership",
                              "signup trigger smartbuy_on_auth_user_created is disabled"]
    assert judge_signups(0, None).reasons == ["signup trigger smartbuy_on_auth_user_created is missing"]
    assert not judge_signups(0, "R").passed  # fires only in replica sessions: not for signups


def test_markdown_table_escapes_and_handles_empty():
    assert markdown_table(["a"], []) == "(none)"
    assert markdown_table(["id", "email"], [("1", "x|y@example.com"), ("2", None)]) == (
        "| id | email |\n|---|---|\n| 1 | x\\|y@example.com |\n| 2 |  |")
