"""GET /api/notifications: the staff notification deliveries, so a failed one is seen and acted on."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require_staff
from services.notifications import deliveries
from services.notify_channels import DeliveryRecord, DeliveryStatus

router = APIRouter(
    prefix="/api",
    tags=["staff"],
    dependencies=[Depends(require_staff)],
    responses={401: {"description": "No valid staff bearer token"}},
)


@router.get("/notifications", response_model=list[DeliveryRecord])
async def list_deliveries(
    request: Request,
    status: Annotated[DeliveryStatus | None, Query(description="e.g. failed")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryRecord]:
    """Newest first: every webhook and e-mail delivery with its attempts and its last error."""
    return await deliveries(request.app.state.intake.notifier.sessions, status=status, limit=limit)
