"""Insurance checks through a pluggable payer gateway, and a gateway backed by a policy table."""

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from utils.validators import validate_member_id

logger = logging.getLogger(__name__)

_PROVIDERS = {
    "aetna": "Aetna",
    "bcbs": "Blue Cross Blue Shield",
    "bluecrossblueshield": "Blue Cross Blue Shield",
    "cigna": "Cigna",
    "uhc": "UnitedHealthcare",
    "unitedhealthcare": "UnitedHealthcare",
    "kaiser": "Kaiser Permanente",
    "kaiserpermanente": "Kaiser Permanente",
}
_CPT = re.compile(r"\d{4}[0-9A-Z]")
_ICD10 = re.compile(r"[A-Z]\d[0-9A-Z](?:\.?[0-9A-Z]{1,4})?")


class InvalidMemberId(ValueError):
    pass


def normalize_provider(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if not key:
        raise ValueError("insurance provider is empty")
    # An unknown payer keeps its own spelling; title-casing would mangle names like "AmeriHealth".
    return _PROVIDERS.get(key, " ".join(name.split()))


def _member_id(raw: str) -> str:
    checked = validate_member_id(raw)
    if not checked.ok or checked.value is None:
        raise InvalidMemberId(checked.error)
    return checked.value


def _code(raw: str, pattern: re.Pattern[str], what: str) -> str:
    code = raw.strip().upper()
    if not pattern.fullmatch(code):
        raise ValueError(f"{what} is not in the expected format")
    return code


class Benefit(BaseModel):
    model_config = ConfigDict(frozen=True)

    copay: Decimal | None = Field(None, ge=0, description="Dollars per visit")
    coinsurance_percent: int | None = Field(None, ge=0, le=100, description="Share the plan pays")
    prior_authorization_required: bool = False
    referral_required: bool = False


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True)

    member_id: str
    provider: str
    plan: str
    effective_date: date
    termination_date: date | None = None
    benefits: dict[str, Benefit] = Field(default_factory=dict, description="By service type")

    def is_active_on(self, day: date) -> bool:
        ended = self.termination_date is not None and day > self.termination_date
        return self.effective_date <= day and not ended


CoverageStatus = Literal["active", "inactive", "not_found"]


class CoverageResult(BaseModel):
    status: CoverageStatus
    member_id: str
    provider: str
    plan: str | None = None
    effective_date: date | None = None
    termination_date: date | None = None
    checked_at: datetime


EligibilityStatus = Literal["eligible", "not_covered", "inactive", "not_found"]


class EligibilityResult(BaseModel):
    status: EligibilityStatus
    member_id: str
    provider: str
    service_type: str
    benefit: Benefit | None = None
    checked_at: datetime


class BenefitsResult(BaseModel):
    status: CoverageStatus
    member_id: str
    provider: str
    plan: str | None = None
    benefits: dict[str, Benefit] = Field(default_factory=dict)
    checked_at: datetime


class PreAuthorizationResult(BaseModel):
    status: Literal["pending_review", "inactive", "not_found"]
    reference: str | None = None
    member_id: str
    provider: str
    procedure_code: str
    diagnosis_code: str
    submitted_at: datetime


class PayerGateway(Protocol):
    """Takes member ids and provider names already normalised by InsuranceService."""

    async def verify_coverage(self, member_id: str, provider: str) -> CoverageResult: ...

    async def check_eligibility(
        self, member_id: str, provider: str, service_type: str
    ) -> EligibilityResult: ...

    async def get_benefits(self, member_id: str, provider: str) -> BenefitsResult: ...

    async def submit_pre_authorization(
        self, member_id: str, provider: str, procedure_code: str, diagnosis_code: str
    ) -> PreAuthorizationResult: ...


class PolicyTableGateway:
    """Answers from the policies it is given; it reaches no payer."""

    def __init__(self, policies: Iterable[Policy], *, today: Callable[[], date] = date.today) -> None:
        self._policies: dict[str, Policy] = {}
        for policy in policies:
            member_id = _member_id(policy.member_id)
            if member_id in self._policies:
                raise ValueError("two policies share a member ID")
            self._policies[member_id] = policy.model_copy(
                update={
                    "member_id": member_id,
                    "provider": normalize_provider(policy.provider),
                    "benefits": {k.strip().lower(): v for k, v in policy.benefits.items()},
                }
            )
        self._today = today
        self.pre_authorizations: list[PreAuthorizationResult] = []

    def _find(self, member_id: str, provider: str) -> tuple[CoverageStatus, Policy | None]:
        policy = self._policies.get(member_id)
        # A member of another payer is unknown to this one.
        if policy is None or policy.provider != provider:
            return "not_found", None
        return ("active" if policy.is_active_on(self._today()) else "inactive"), policy

    async def verify_coverage(self, member_id: str, provider: str) -> CoverageResult:
        status, policy = self._find(member_id, provider)
        return CoverageResult(
            status=status,
            member_id=member_id,
            provider=provider,
            plan=policy.plan if policy else None,
            effective_date=policy.effective_date if policy else None,
            termination_date=policy.termination_date if policy else None,
            checked_at=datetime.now(UTC),
        )

    async def check_eligibility(self, member_id: str, provider: str, service_type: str) -> EligibilityResult:
        status, policy = self._find(member_id, provider)
        benefit = policy.benefits.get(service_type) if policy and status == "active" else None
        outcome: EligibilityStatus = status if status != "active" else "not_covered"
        if benefit is not None:
            outcome = "eligible"
        return EligibilityResult(
            status=outcome,
            member_id=member_id,
            provider=provider,
            service_type=service_type,
            benefit=benefit,
            checked_at=datetime.now(UTC),
        )

    async def get_benefits(self, member_id: str, provider: str) -> BenefitsResult:
        status, policy = self._find(member_id, provider)
        return BenefitsResult(
            status=status,
            member_id=member_id,
            provider=provider,
            plan=policy.plan if policy else None,
            benefits=dict(policy.benefits) if policy and status == "active" else {},
            checked_at=datetime.now(UTC),
        )

    async def submit_pre_authorization(
        self, member_id: str, provider: str, procedure_code: str, diagnosis_code: str
    ) -> PreAuthorizationResult:
        status, _ = self._find(member_id, provider)
        # A table cannot approve anything: requests are recorded for staff to take to the payer.
        result = PreAuthorizationResult(
            status="pending_review" if status == "active" else status,
            reference=str(uuid.uuid4()) if status == "active" else None,
            member_id=member_id,
            provider=provider,
            procedure_code=procedure_code,
            diagnosis_code=diagnosis_code,
            submitted_at=datetime.now(UTC),
        )
        if result.reference:
            self.pre_authorizations.append(result)
        return result


class InsuranceService:
    def __init__(self, gateway: PayerGateway) -> None:
        self.gateway = gateway

    async def verify_coverage(self, member_id: str, provider: str) -> CoverageResult:
        result = await self.gateway.verify_coverage(_member_id(member_id), normalize_provider(provider))
        logger.info("coverage check: %s", result.status)
        return result

    async def check_eligibility(
        self, member_id: str, provider: str, service_type: str = "medical"
    ) -> EligibilityResult:
        service = service_type.strip().lower()
        if not service:
            raise ValueError("service type is empty")
        result = await self.gateway.check_eligibility(
            _member_id(member_id), normalize_provider(provider), service
        )
        logger.info("eligibility check: %s", result.status)
        return result

    async def get_benefits(self, member_id: str, provider: str) -> BenefitsResult:
        result = await self.gateway.get_benefits(_member_id(member_id), normalize_provider(provider))
        logger.info("benefits lookup: %s", result.status)
        return result

    async def submit_pre_authorization(
        self, member_id: str, provider: str, procedure_code: str, diagnosis_code: str
    ) -> PreAuthorizationResult:
        result = await self.gateway.submit_pre_authorization(
            _member_id(member_id),
            normalize_provider(provider),
            _code(procedure_code, _CPT, "procedure code (CPT)"),
            _code(diagnosis_code, _ICD10, "diagnosis code (ICD-10)"),
        )
        logger.info("pre-authorization request: %s", result.status)
        return result
