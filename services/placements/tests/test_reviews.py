"""Review schedules and alerts: the pure rules."""

import datetime as dt

import pytest
from homeward.contracts.vocab import AgeBand, Cohort, ReviewOutcome, ReviewType, Setting
from homeward.placements.domain import (
    PolicyError,
    Review,
    ReviewPolicy,
    ReviewRule,
    ReviewSchedule,
    alert_for,
    next_due,
    overdue_level,
)
from placements_support import default_policy

D = dt.date.fromisoformat
VISIT = ReviewRule(ReviewType.OVERSIGHT_VISIT, 56, 14, 14)
CTR = ReviewRule(ReviewType.CTR, 182, 28, 28)


def intervals(cohort: Cohort, age: AgeBand, setting: Setting, ooa: bool) -> dict[str, int]:
    return {r.review_type.value: r.interval_days for r in default_policy().rules_for(cohort, age, setting, ooa)}


def rv(review_type: ReviewType, day: str, next_due_on: str | None = None) -> Review:
    return Review(review_type, D(day), ReviewOutcome.CONTINUE, D(next_due_on) if next_due_on else None, "e")


# ------------------------------------------------------------------ the default policy table


def test_adults_placed_out_of_area_get_an_oversight_visit_every_eight_weeks() -> None:
    assert intervals(Cohort.MENTAL_HEALTH, AgeBand.ADULT, Setting.INPATIENT, True) == {"oversight_visit": 56}
    assert intervals(Cohort.DEMENTIA, AgeBand.OLDER_ADULT, Setting.INPATIENT, True) == {"oversight_visit": 56}


def test_mental_health_placements_in_area_have_no_scheduled_review() -> None:
    assert intervals(Cohort.MENTAL_HEALTH, AgeBand.ADULT, Setting.INPATIENT, False) == {}


def test_children_out_of_area_get_six_weekly_visits_and_ld_autism_children_a_cetr_every_three_months() -> None:
    assert intervals(Cohort.MENTAL_HEALTH, AgeBand.CHILD, Setting.INPATIENT, True) == {"oversight_visit": 42}
    assert intervals(Cohort.AUTISM, AgeBand.CHILD, Setting.INPATIENT, True) == {"oversight_visit": 42, "cetr": 91}
    assert intervals(Cohort.LEARNING_DISABILITY, AgeBand.CHILD, Setting.COMMUNITY, False) == {"cetr": 91}


def test_adult_ld_autism_inpatients_get_a_ctr_every_six_months_and_twelve_in_secure_services() -> None:
    assert intervals(Cohort.LEARNING_DISABILITY_AND_AUTISM, AgeBand.ADULT, Setting.INPATIENT, False) == {"ctr": 182}
    assert intervals(Cohort.LEARNING_DISABILITY, AgeBand.ADULT, Setting.SECURE, True) == {
        "ctr": 365,
        "oversight_visit": 56,
    }
    assert intervals(Cohort.AUTISM, AgeBand.ADULT, Setting.COMMUNITY, False) == {}


# ------------------------------------------------------------------ the table format


def test_the_most_specific_row_wins_and_interval_zero_switches_a_review_off() -> None:
    policy = ReviewPolicy.from_csv(
        "# comments are allowed\n"
        "cohort,age_band,setting,out_of_area,review_type,interval_days,due_soon_days,escalate_after_days\n"
        "*,*,*,true,oversight_visit,56,14,14\n"
        "dementia,*,*,true,oversight_visit,28,7,7\n"
        "*,*,community,true,oversight_visit,0,0,1\n"
        "dementia,older_adult,community,*,oversight_visit,90,7,7\n"
    )
    rules = {c: policy.rules_for(c, AgeBand.OLDER_ADULT, Setting.INPATIENT, True) for c in Cohort}
    assert rules[Cohort.DEMENTIA][0].interval_days == 28
    assert rules[Cohort.MENTAL_HEALTH][0].interval_days == 56
    assert policy.rules_for(Cohort.MENTAL_HEALTH, AgeBand.ADULT, Setting.COMMUNITY, True) == []
    community = policy.rules_for(Cohort.DEMENTIA, AgeBand.OLDER_ADULT, Setting.COMMUNITY, True)
    assert [r.interval_days for r in community] == [90]
    assert community[0].source == "review_policy.csv:6"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("martian,*,*,*,ctr,10,1,1", "'martian' is not one of"),
        ("*,*,*,maybe,ctr,10,1,1", "out_of_area must be"),
        ("*,*,*,*,annual_party,10,1,1", "review_type must be"),
        ("*,*,*,*,ctr,ten,1,1", "interval_days must be a whole number"),
        ("*,*,*,*,ctr,10,1,0", "escalate_after_days must be at least 1"),
        ("*,*,*,*,ctr,10,1", "expected 8 columns"),
    ],
)
def test_a_malformed_policy_row_is_refused_with_its_line_number(row: str, problem: str) -> None:
    header = "cohort,age_band,setting,out_of_area,review_type,interval_days,due_soon_days,escalate_after_days"
    with pytest.raises(PolicyError, match=problem) as caught:
        ReviewPolicy.from_csv(f"{header}\n{row}\n", origin="p.csv")
    assert "p.csv:2" in str(caught.value)


def test_a_policy_with_the_wrong_header_is_refused() -> None:
    with pytest.raises(PolicyError, match="header"):
        ReviewPolicy.from_csv("cohort,age,setting\n*,*,*\n")


# ------------------------------------------------------------------ due dates


def test_the_first_review_is_due_one_interval_after_the_start() -> None:
    assert next_due(D("2026-01-05"), VISIT, []).due_date == D("2026-03-02")


def test_due_dates_count_the_29th_of_february_in_a_leap_year() -> None:
    assert next_due(D("2028-02-01"), VISIT, []).due_date == D("2028-03-28")
    assert next_due(D("2027-02-01"), VISIT, []).due_date == D("2027-03-29")
    assert next_due(D("2027-09-01"), CTR, []).due_date == D("2028-03-01")
    assert next_due(D("2026-09-01"), CTR, []).due_date == D("2027-03-02")


def test_a_schedule_runs_straight_across_the_financial_year_boundary() -> None:
    first = next_due(D("2026-02-20"), VISIT, [])
    assert first.due_date == D("2026-04-17")
    moved = next_due(D("2026-02-20"), VISIT, [rv(ReviewType.OVERSIGHT_VISIT, "2026-03-31")])
    assert (moved.due_date, moved.last_review_date) == (D("2026-05-26"), D("2026-03-31"))


def test_a_completed_review_moves_the_next_due_date_from_the_review_date() -> None:
    reviews = [rv(ReviewType.OVERSIGHT_VISIT, "2026-02-20")]
    assert next_due(D("2026-01-05"), VISIT, reviews).due_date == D("2026-04-17")


def test_an_earlier_agreed_next_review_wins_and_a_later_one_is_ignored() -> None:
    earlier = [rv(ReviewType.OVERSIGHT_VISIT, "2026-02-20", "2026-03-10")]
    later = [rv(ReviewType.OVERSIGHT_VISIT, "2026-02-20", "2026-06-30")]
    assert next_due(D("2026-01-05"), VISIT, earlier).due_date == D("2026-03-10")
    assert next_due(D("2026-01-05"), VISIT, later).due_date == D("2026-04-17")


def test_a_review_reported_late_does_not_move_the_due_date_back() -> None:
    reviews = [rv(ReviewType.OVERSIGHT_VISIT, "2026-04-01"), rv(ReviewType.OVERSIGHT_VISIT, "2026-02-20")]
    assert next_due(D("2026-01-05"), VISIT, reviews).due_date == D("2026-05-27")


def test_reviews_of_another_type_do_not_move_the_schedule() -> None:
    assert next_due(D("2026-01-05"), VISIT, [rv(ReviewType.CPA_REVIEW, "2026-02-20")]).due_date == D("2026-03-02")


# ------------------------------------------------------------------ alerts


def schedule(due: str, rule: ReviewRule = VISIT) -> ReviewSchedule:
    return ReviewSchedule(rule, D(due))


def test_due_soon_starts_exactly_due_soon_days_before_the_due_date() -> None:
    s = schedule("2026-03-02")
    assert alert_for(s, today=D("2026-02-15")) is None
    soon = alert_for(s, today=D("2026-02-16"))
    assert soon is not None and (soon.kind, soon.days) == ("due_soon", 14)
    on_the_day = alert_for(s, today=D("2026-03-02"))
    assert on_the_day is not None and (on_the_day.kind, on_the_day.days) == ("due_soon", 0)


@pytest.mark.parametrize(
    ("today", "days", "level"),
    [("2026-03-03", 1, 1), ("2026-03-16", 14, 1), ("2026-03-17", 15, 2), ("2026-03-30", 28, 2), ("2026-03-31", 29, 3)],
)
def test_overdue_from_the_day_after_and_escalating_after_each_further_interval(
    today: str, days: int, level: int
) -> None:
    alert = alert_for(schedule("2026-03-02"), today=D(today))
    assert alert is not None
    assert (alert.kind, alert.days, alert.level) == ("overdue", days, level)


def test_escalation_stops_at_level_three() -> None:
    assert overdue_level(400, 14) == 3
    alert = alert_for(schedule("2026-03-02"), today=D("2027-03-02"))
    assert alert is not None and alert.level == 3


def test_a_placement_ending_before_its_first_review_gets_no_alert() -> None:
    s = schedule("2026-03-02")
    for today in ("2026-02-20", "2026-03-02", "2026-05-01"):
        assert alert_for(s, today=D(today), end_date=D("2026-02-25")) is None
    assert alert_for(s, today=D("2026-05-01"), end_date=D("2026-03-02")) is None


def test_a_review_missed_before_the_end_is_chased_until_the_end_and_never_after() -> None:
    s = schedule("2026-03-02")
    before_end = alert_for(s, today=D("2026-03-06"), end_date=D("2026-03-07"))
    assert before_end is not None
    assert (before_end.kind, before_end.days, before_end.level) == ("overdue", 4, 1)
    # From the end date on, nothing: not the level reached at the end, not a first alert.
    for today in ("2026-03-07", "2026-03-08", "2026-06-01"):
        assert alert_for(s, today=D(today), end_date=D("2026-03-07")) is None


def test_the_reported_case_a_person_discharged_on_1_october_is_not_chased_on_22_november() -> None:
    """Issue 13: a review due in August, missed, the person discharged on 1 October; the
    scheduler first ran (a replay) as of 22 November and said "level 3". It says nothing."""
    s = ReviewSchedule(VISIT, D("2026-08-01"))
    assert alert_for(s, today=D("2026-11-22"), end_date=D("2026-10-01")) is None
    # Before the discharge the same miss was chased, escalating as usual.
    late = alert_for(s, today=D("2026-09-30"), end_date=D("2026-10-01"))
    assert late is not None and (late.kind, late.level) == ("overdue", 3)
    # A discharge planned for later (an end date after today) does not stop the chasing now.
    assert alert_for(s, today=D("2026-09-30"), end_date=D("2026-12-01")) is not None
