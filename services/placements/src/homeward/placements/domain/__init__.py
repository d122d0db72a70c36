"""The placement register's rules: pure, no I/O."""

from .areas import SiteFact, is_out_of_area, resolve_site_area
from .authority import may_act_for, partner_principal
from .model import (
    AGREED,
    AWAITING_AGREEMENT,
    RATE_HELD,
    Ending,
    Placement,
    RateChange,
    RateEntry,
    Refused,
    rate_on,
    register,
)
from .repatriation import Repatriation, best_source, best_target, check_stated, may_match, repatriation
from .reviews import (
    Alert,
    PolicyError,
    Review,
    ReviewPolicy,
    ReviewRule,
    ReviewSchedule,
    alert_for,
    next_due,
    overdue_level,
)

__all__ = [
    "AGREED",
    "AWAITING_AGREEMENT",
    "RATE_HELD",
    "may_act_for",
    "partner_principal",
    "Alert",
    "Ending",
    "Placement",
    "PolicyError",
    "RateChange",
    "RateEntry",
    "Refused",
    "Repatriation",
    "Review",
    "ReviewPolicy",
    "ReviewRule",
    "ReviewSchedule",
    "SiteFact",
    "alert_for",
    "best_source",
    "best_target",
    "check_stated",
    "is_out_of_area",
    "may_match",
    "next_due",
    "overdue_level",
    "rate_on",
    "register",
    "repatriation",
    "resolve_site_area",
]
