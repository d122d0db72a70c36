"""Out of area: the site's commissioning area against the commissioner's, from reference data."""

import pytest
from homeward.contracts.events import PlacementRegistered
from homeward.kit.consumer import Rejected
from homeward.kit.reference import Commissioner, ReferenceData, Site
from homeward.placements.domain import is_out_of_area, resolve_site_area
from placements_support import FAR_PROVIDER, FAR_SITE, HOME, Register, at, beds, event, placement_made


def test_a_site_in_another_commissioning_area_is_out_of_area() -> None:
    assert is_out_of_area("QWU", "QAB")
    assert not is_out_of_area("QWU", "QWU")


def test_the_events_own_statement_wins_then_the_reference_file_then_what_was_learned() -> None:
    assert resolve_site_area("QAB", "QWU", "QXX") == "QAB"
    assert resolve_site_area(None, "QWU", "QXX") == "QWU"
    assert resolve_site_area(None, None, "QXX") == "QXX"
    assert resolve_site_area(None, None, None) is None


async def test_a_sub_icb_commissioner_is_in_area_at_a_site_of_its_icb_per_the_reference_file() -> None:
    ref = ReferenceData(
        commissioners={"05A": Commissioner("05A", "QWU")},
        sites={"RYG01": Site("RYG01", "RYG", "QWU"), FAR_SITE: Site(FAR_SITE, FAR_PROVIDER, "QAB")},
    )
    reg = Register(ref=ref)
    await reg.send(event(placement_made("PLC-1", provider="RYG", site="RYG01", site_area=None)))
    await reg.send(event(placement_made("PLC-2", site_area=None)))
    local, far = reg.store.of_type(PlacementRegistered)
    assert (local.commissioner_area, local.provider_site_area, local.out_of_area) == ("QWU", "QWU", False)
    assert (far.provider_site_area, far.out_of_area) == ("QAB", True)


async def test_a_commissioner_missing_from_reference_data_is_its_own_area() -> None:
    reg = Register(ref=ReferenceData())
    await reg.send(event(placement_made("PLC-1", commissioner="05R", site_area="05R"), org="05R"))
    (registered,) = reg.store.of_type(PlacementRegistered)
    assert (registered.commissioner_area, registered.out_of_area) == ("05R", False)


async def test_a_site_area_learned_from_bed_availability_decides_a_later_placement() -> None:
    reg = Register(ref=ReferenceData())
    await reg.send(event(beds(FAR_PROVIDER, FAR_SITE, "QAB", "2026-01-01"), org=FAR_PROVIDER))
    await reg.send(event(placement_made("PLC-1", site_area=None)))
    (registered,) = reg.store.of_type(PlacementRegistered)
    assert (registered.provider_site_area, registered.out_of_area) == ("QAB", True)


async def test_an_older_statement_about_a_site_does_not_replace_a_newer_one() -> None:
    reg = Register(ref=ReferenceData())
    await reg.send(event(beds(FAR_PROVIDER, FAR_SITE, "QAB", "2026-01-03"), org=FAR_PROVIDER))
    await reg.send(event(beds(FAR_PROVIDER, FAR_SITE, HOME, "2026-01-01"), org=FAR_PROVIDER))
    assert reg.store.sites[FAR_SITE].area == "QAB"
    await reg.send(event(placement_made("PLC-0", site_area="QAC"), time=at("2026-01-04")))
    assert reg.store.sites[FAR_SITE].area == "QAC"


async def test_a_placement_at_a_site_of_unknown_area_is_rejected_asking_for_provider_site_area() -> None:
    reg = Register(ref=ReferenceData())
    with pytest.raises(Rejected) as caught:
        await reg.send(event(placement_made("PLC-1", site_area=None)))
    assert caught.value.reason == "unknown-site"
    assert "provider_site_area" in caught.value.message
    assert reg.store.placements == {}


async def test_only_the_provider_may_report_its_beds() -> None:
    reg = Register(ref=ReferenceData())
    with pytest.raises(Rejected) as caught:
        await reg.send(event(beds(FAR_PROVIDER, FAR_SITE, HOME, "2026-01-01"), org=HOME))
    assert caught.value.reason == "not-party"
    assert reg.store.sites == {}
