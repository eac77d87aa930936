"""The quick path for phone numbers answers exactly as `phonenumbers` does, or not at all."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import IdentifierRejected, normalize_phone
from protocol._identifiers import full_e164
from protocol._phones import quick_e164

REGIONS = ["RU", "KZ", "BY", "UA", "US", "GB", "DE", "FR", "IT", "IN", "CN", "BR", "AM", "UZ"]


def _full(raw: str, region: str, allowed: frozenset[str]) -> str | None:
    try:
        return full_e164(raw, region, allowed)
    except IdentifierRejected:
        return None


def _written(rng: random.Random, head: str, national: str) -> str:
    """`head` and `national` with the separators a cashier or a POS might put between."""
    parts, at = [head], 0
    while at < len(national):
        step = rng.randint(1, 4)
        parts.append(national[at : at + step])
        at += step
    gaps = [rng.choice(["", " ", "-", ".", " (", ") "]) for _ in parts]
    return "".join(gap + part for gap, part in zip(gaps, parts, strict=True))


def test_every_russian_prefix_agrees_with_phonenumbers() -> None:
    """Every 4-digit start of a 10-digit Russian national number, written both ways; where the
    quick path answers, the full path gives the same number, and the quick path answers for
    personal number but those whose national number starts with the trunk prefix 8 (it leaves
    those to `phonenumbers`, which may read that 8 as a second trunk prefix)."""
    rng = random.Random(20261207)
    answered = personal = 0
    allowed = frozenset({"RU"})
    for prefix in range(10_000):
        national = f"{prefix:04d}{rng.randrange(10**6):06d}"
        for head in ("+7", "8"):
            raw = _written(rng, head, national)
            quick, full = quick_e164(raw, "RU", allowed), _full(raw, "RU", allowed)
            if quick is not None:
                assert quick == full, raw
                answered += 1
            if full is not None:
                personal += 1
                if not national.startswith(("0", "8")):
                    assert quick == full, raw
    assert answered > 0.9 * personal > 1_000


def test_mobiles_take_the_quick_path() -> None:
    for raw in ("+7 916 123-45-67", "8 (916) 123-45-67", "+79991234567", "8-903-000-00-00"):
        assert quick_e164(raw, "RU", frozenset({"RU"})) == full_e164(raw, "RU", frozenset({"RU"}))


@pytest.mark.parametrize(
    "raw",
    [
        "+7 701 123 4567",  # Kazakhstan, not allowed
        "8-800-555-35-35",  # toll-free
        "+7 495 123-45-67",  # a Moscow landline
        "8 10 49 30 1234567",  # 810: calling abroad from Russia
        "9161234567",  # no prefix: the full path reads it
        "+7 8 916 123 45 67",  # a trunk prefix after the country code
        "+7 (916) 123-45-678",
        "８９１６１２３４５６７",  # full-width digits
    ],
)
def test_the_rest_goes_the_full_way(raw: str) -> None:
    assert quick_e164(raw, "RU", frozenset({"RU"})) is None


def test_a_neighbour_allowed_is_still_read_by_phonenumbers() -> None:
    both = frozenset({"RU", "KZ"})
    assert normalize_phone("+7 701 123 4567", allowed_regions=both) == "+77011234567"
    assert quick_e164("+7 701 123 4567", "RU", both) == "+77011234567"
    with pytest.raises(IdentifierRejected) as refused:
        normalize_phone("+7 701 123 4567")
    assert refused.value.code == "phone_foreign"


@settings(max_examples=800, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    allowed=st.sets(st.sampled_from(REGIONS), max_size=3),
    head=st.sampled_from(["+", "8", "0", "1", "+7", "+1", "+44", "+49", "+375", "+380", ""]),
    body=st.text(alphabet="0123456789 ()-.+", min_size=0, max_size=16),
)
def test_random_input_agrees_with_phonenumbers(
    region: str, allowed: set[str], head: str, body: str
) -> None:
    raw, regions = head + body, frozenset(allowed | {region})
    quick = quick_e164(raw, region, regions)
    if quick is not None:
        assert quick == _full(raw, region, regions)


@settings(max_examples=800, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    national=st.from_regex(r"[1-9][0-9]{7,11}", fullmatch=True),
    international=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_well_formed_numbers_agree_with_phonenumbers(
    region: str, national: str, international: bool, seed: int
) -> None:
    """Numbers written as the quick path reads them, in many regions' plans."""
    from phonenumbers import PhoneMetadata

    metadata = PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    head = f"+{metadata.country_code}" if international else (metadata.national_prefix or "")
    raw = _written(random.Random(seed), head, national)
    allowed = frozenset({region})
    quick, full = quick_e164(raw, region, allowed), _full(raw, region, allowed)
    if quick is not None:
        assert quick == full


def test_every_regions_example_numbers_agree_with_phonenumbers() -> None:
    """`phonenumbers`' own example of every number type in every region, written both ways:
    service numbers, landlines and pagers are refused by both paths, personal ones read alike."""
    import phonenumbers
    from phonenumbers import PhoneMetadata, PhoneNumberType

    answered = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = PhoneMetadata.metadata_for_region(region)
        assert metadata is not None
        neighbours = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[metadata.country_code])
        for kind in PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            national = phonenumbers.national_significant_number(example)
            heads = [f"+{metadata.country_code} ", f"{metadata.national_prefix or '+'} "]
            for raw in (head + national for head in heads):
                for allowed in (frozenset({region}), neighbours):
                    quick = quick_e164(raw, region, allowed)
                    if quick is not None:
                        assert quick == _full(raw, region, allowed), (region, kind, raw)
                        answered += 1
    assert answered > 500
