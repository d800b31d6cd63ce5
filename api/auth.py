"""Staff bearer tokens (STAFF_TOKENS): the name of whoever presents one, for the audit trail."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from config import Settings


def staff_name(presented: str | None, tokens: dict[str, SecretStr]) -> str | None:
    """Compares against every token, so the time taken says nothing about which one nearly matched."""
    found = None
    given = (presented or "").encode()
    for name, token in tokens.items():
        if hmac.compare_digest(given, token.get_secret_value().encode()) and presented:
            found = name
    return found


# Header only: a token in the query string ends up in access logs and browser history.
_bearer = HTTPBearer(auto_error=False, description="A staff token from STAFF_TOKENS")


def require_staff(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    settings: Settings = request.app.state.intake.settings
    presented = credentials.credentials if credentials is not None else None
    name = staff_name(presented, settings.STAFF_TOKENS)
    if name is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "A valid staff token is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return name


Staff = Annotated[str, Depends(require_staff)]
