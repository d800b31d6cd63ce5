"""GET/PATCH /api/intakes...: the clinic's view of intakes; every call is audited with the staff name."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.auth import Staff, require_staff
from services.fhir import intake_bundle
from services.storage.intakes import IntakeNotFound, IntakeStore, InvalidCorrection
from services.storage.views import IntakeDetail, IntakeStatus, IntakeSummary, ReviewState
from services.storage.writer import StorageError

FHIR_JSON = "application/fhir+json"


def _store(request: Request) -> IntakeStore:
    store: IntakeStore = request.app.state.intake.records
    return store


Store = Annotated[IntakeStore, Depends(_store)]

router = APIRouter(
    prefix="/api",
    tags=["staff"],
    dependencies=[Depends(require_staff)],
    responses={401: {"description": "No valid staff bearer token"}},
)


class IntakeCorrection(BaseModel):
    patch: dict[str, Any] = Field(
        description="A JSON merge patch (RFC 7396) against the latest record: objects merge, null removes",
        examples=[{"patient_info": {"date_of_birth": "1980-03-05"}}],
    )
    reason: str = Field(min_length=1, max_length=500, description="Why the record is corrected")


def _not_found(exc: IntakeNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))


@router.get("/intakes", response_model=list[IntakeSummary])
async def list_intakes(
    store: Store,
    staff: Staff,
    status_: Annotated[IntakeStatus | None, Query(alias="status")] = None,
    since: Annotated[datetime | None, Query(description="Started at or after (ISO 8601)")] = None,
    practice: Annotated[bool, Query(description="true: only practice (simulator) intakes")] = False,
    q: Annotated[str | None, Query(max_length=120, description="Part of the patient's name")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[IntakeSummary]:
    if since is not None and since.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since needs a time zone, e.g. Z")
    return await store.list_intakes(
        staff=staff, status=status_, since=since, practice=practice, q=q, limit=limit, offset=offset
    )


@router.get("/patients/intakes", response_model=list[IntakeSummary])
async def patient_intakes(
    store: Store,
    staff: Staff,
    name: Annotated[str | None, Query(max_length=120)] = None,
    dob: Annotated[str | None, Query(max_length=32, description="Date of birth")] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> list[IntakeSummary]:
    """A patient's intakes across visits, oldest first: exact normalized name, birth date and/or phone."""
    try:
        return await store.search(staff=staff, name=name, dob=dob, phone=phone)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get("/intakes/{intake_id}", response_model=IntakeDetail)
async def read_intake(intake_id: str, store: Store, staff: Staff) -> IntakeDetail:
    try:
        return await store.get_intake(intake_id, staff=staff)
    except IntakeNotFound as exc:
        raise _not_found(exc) from None


@router.patch(
    "/intakes/{intake_id}",
    response_model=IntakeDetail,
    responses={409: {"description": "The record changed at the same moment; send it again"}},
)
async def correct_intake(
    intake_id: str, correction: IntakeCorrection, store: Store, staff: Staff
) -> IntakeDetail | JSONResponse:
    try:
        return await store.correct(intake_id, correction.patch, staff=staff, reason=correction.reason)
    except IntakeNotFound as exc:
        raise _not_found(exc) from None
    except InvalidCorrection as exc:
        # The same shape as FastAPI's own 422, with each path inside the record.
        detail = [{**error, "loc": ["body", "patch", *error["loc"]]} for error in exc.errors]
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    except StorageError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/intakes/{intake_id}/review", response_model=ReviewState)
async def review_intake(intake_id: str, store: Store, staff: Staff) -> ReviewState:
    try:
        return await store.review(intake_id, staff=staff)
    except IntakeNotFound as exc:
        raise _not_found(exc) from None


@router.get(
    "/intakes/{intake_id}/fhir",
    response_class=Response,
    responses={
        200: {"description": "A FHIR R4 Bundle of type collection", "content": {FHIR_JSON: {}}},
        404: {"description": "No such intake, or no record extracted yet"},
    },
)
async def intake_fhir(intake_id: str, store: Store, staff: Staff) -> Response:
    try:
        intake = await store.get_intake(intake_id, staff=staff, purpose="staff_fhir")
    except IntakeNotFound as exc:
        raise _not_found(exc) from None
    if intake.record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no record has been extracted for this intake")
    latest = intake.versions[-1]
    bundle = intake_bundle(intake.record, recorded=latest.created_at, model=latest.model)
    return Response(bundle.model_dump_json(), media_type=FHIR_JSON)
