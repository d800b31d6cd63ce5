"""What the waiting-room tablet asks the server for: the page's settings and the clinic CA."""

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

from config import Settings
from services.tls_certificate import CA_NAME, TLS_DIR


def tablet_routes(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/app/config")
    async def page_config() -> dict[str, Any]:
        return {
            "kiosk_mode": settings.KIOSK_MODE,
            "kiosk_review_seconds": settings.KIOSK_REVIEW_SECONDS,
            "kiosk_idle_seconds": settings.KIOSK_IDLE_SECONDS,
            "kiosk_idle_answer_seconds": settings.KIOSK_IDLE_ANSWER_SECONDS,
        }

    # Public on purpose, like any certificate: a tablet fetches it before it can trust the server.
    @router.get(f"/{CA_NAME}")
    async def clinic_ca() -> Response:
        ca_file = settings.DATA_DIR / TLS_DIR / CA_NAME
        if not settings.TLS_SELF_SIGNED or not ca_file.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "This server has no clinic certificate.")
        return Response(ca_file.read_bytes(), media_type="application/x-x509-ca-cert")

    return router
