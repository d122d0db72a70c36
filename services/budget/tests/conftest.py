from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _simulated_years_ahead() -> Iterator[None]:
    """Budget's worked examples and property sequences simulate years from 2026 (a leap-year
    commitment in 2027-28, closures three years on); the contracts refuse facts dated more than
    a year after the real today unless configured otherwise, as here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOMEWARD_CONTRACTS_MAX_FUTURE_DAYS", str(10 * 366))
        yield
