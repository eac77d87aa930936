"""A quick path for the common phone forms, giving what `phonenumbers` gives or nothing.

Identify by phone is on the cashier's critical path, and `phonenumbers.parse` with its checks
was about half of it (some 30–45 µs). Most numbers at a till arrive in one of two forms: the
international one (`+7 916 123-45-67`) or the national one with the trunk prefix
(`8 (916) 123-45-67`). For those, this module reads the national number itself and types it
with the region's own metadata, through the same tests in the same order as `phonenumbers`
(`_number_type_helper` and `_region_code_for_number_from_list`), with the patterns compiled
once. It answers only for a personal number of the region asked for; anything else (another
form, a number of a neighbouring region, an invalid or a service number) gets `None`, and the
caller takes the full `phonenumbers` path, which says precisely what is wrong. Tests hold it
equal to that path over every prefix of the Russian numbering plan and over random input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc

_SEPARATORS = str.maketrans("", "", " ()-.")


@dataclass(frozen=True)
class _Desc:
    pattern: re.Pattern[str] | None
    lengths: frozenset[int]

    def matches(self, national: str) -> bool:
        """`phonenumbers._is_number_matching_desc`: lengths first, then the whole pattern."""
        if self.pattern is None or (self.lengths and len(national) not in self.lengths):
            return False
        return self.pattern.fullmatch(national) is not None


def _desc(desc: PhoneNumberDesc | None) -> _Desc:
    if desc is None or not desc.national_number_pattern:
        return _Desc(None, frozenset())
    return _Desc(re.compile(desc.national_number_pattern), frozenset(desc.possible_length))


def _descs(*descs: PhoneNumberDesc | None) -> tuple[_Desc, ...]:
    """Those of `descs` that have a pattern (one without never matches), in order."""
    return tuple(desc for desc in map(_desc, descs) if desc.pattern is not None)


@dataclass(frozen=True)
class _Plan:
    """One region's numbering plan, as far as a personal number needs it."""

    region: str
    general: _Desc
    not_personal: tuple[_Desc, ...]
    """Premium, toll-free, shared-cost and VoIP: tested before, and winning over, personal."""
    personal: _Desc
    between: tuple[_Desc, ...]
    """Pager, UAN and voicemail: tested after personal and before fixed line and mobile."""
    fixed_line: _Desc
    mobile: _Desc
    same_mobile_and_fixed_line: bool
    leading_digits: re.Pattern[str] | None

    def personal_number(self, national: str) -> bool:
        """`number_type` is MOBILE, FIXED_LINE_OR_MOBILE or PERSONAL_NUMBER."""
        if not self.general.matches(national):
            return False
        if any(desc.matches(national) for desc in self.not_personal):
            return False
        if self.personal.matches(national):
            return True
        if any(desc.matches(national) for desc in self.between):
            return False
        if self.fixed_line.matches(national):
            return self.same_mobile_and_fixed_line or self.mobile.matches(national)
        return not self.same_mobile_and_fixed_line and self.mobile.matches(national)

    def claims(self, national: str) -> bool:
        """Whether `region_code_for_number` stops at this region for `national`."""
        if self.leading_digits is not None:
            return self.leading_digits.match(national) is not None
        return self.typed(national)

    def typed(self, national: str) -> bool:
        """`number_type` is not UNKNOWN (a region without leading digits is tried whole)."""
        if not self.general.matches(national):
            return False
        others = (*self.not_personal, self.personal, *self.between, self.fixed_line)
        return any(desc.matches(national) for desc in others) or (
            not self.same_mobile_and_fixed_line and self.mobile.matches(national)
        )


@cache
def _plan(region: str) -> _Plan | None:
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None:
        return None
    return _Plan(
        region=region,
        general=_desc(metadata.general_desc),
        not_personal=_descs(
            metadata.premium_rate, metadata.toll_free, metadata.shared_cost, metadata.voip
        ),
        personal=_desc(metadata.personal_number),
        between=_descs(metadata.pager, metadata.uan, metadata.voicemail),
        fixed_line=_desc(metadata.fixed_line),
        mobile=_desc(metadata.mobile),
        same_mobile_and_fixed_line=bool(metadata.same_mobile_and_fixed_line_pattern),
        leading_digits=re.compile(metadata.leading_digits) if metadata.leading_digits else None,
    )


@dataclass(frozen=True)
class _Forms:
    """The two written forms of `region`'s numbers that the quick path reads."""

    international: str
    """`+` and the country code."""
    trunk: str | None
    """The national (trunk) prefix, when the region has a plain one."""
    dialing_out: re.Pattern[str] | None
    """The prefix for calling abroad (`810` in Russia), which `phonenumbers` reads first."""
    plans: tuple[_Plan, ...]
    """Every region sharing the country code, in `phonenumbers`' order."""


@cache
def _forms(region: str) -> _Forms | None:
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None or not metadata.country_code:
        return None
    code = metadata.country_code
    plans = tuple(
        plan
        for plan in (_plan(name) for name in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code])
        if plan is not None
    )
    prefix = metadata.national_prefix
    # a region that rewrites national numbers as it parses them is left to `phonenumbers`
    plain = prefix and prefix.isdigit() and metadata.national_prefix_for_parsing in (None, prefix)
    rewrites = metadata.national_prefix_transform_rule is not None
    idd = metadata.international_prefix
    return _Forms(
        f"+{code}",
        prefix if plain and not rewrites else None,
        re.compile(idd) if idd else None,
        plans,
    )


def quick_e164(raw: str, region: str, allowed: frozenset[str]) -> str | None:
    """The E.164 form of `raw` when it is a personal number of a region in `allowed`, written
    as `+<code> <national>` or `<trunk prefix> <national>` of `region`; otherwise None."""
    forms = _forms(region)
    if forms is None or not raw.isascii():
        return None
    digits = raw.translate(_SEPARATORS)
    national = _national(digits, forms)
    if national is None:
        return None
    owner = next((plan for plan in forms.plans if plan.claims(national)), None)
    if owner is None or owner.region not in allowed or not owner.personal_number(national):
        return None
    return forms.international + national


def _national(digits: str, forms: _Forms) -> str | None:
    trunk = forms.trunk
    if digits.startswith(forms.international):
        national = digits[len(forms.international) :]
    elif trunk is not None and digits.startswith(trunk):
        if forms.dialing_out is not None and forms.dialing_out.match(digits):
            return None
        national = digits[len(trunk) :]
    else:
        return None
    if not national.isdigit() or national.startswith("0") or not 8 <= len(national) <= 12:
        return None
    if trunk is not None and national.startswith(trunk):
        return None  # `phonenumbers` may take it for a trunk prefix once more
    return national
