"""Settings for the intake server, read from the environment and `.env`."""

import json
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_LIVE_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
DEFAULT_EXTRACTION_MODEL = "gemini-2.5-flash"

# The prebuilt voices the Live API's native-audio models accept (Chirp 3 HD set).
KNOWN_VOICES = frozenset(
    {
        "Achernar",
        "Achird",
        "Algenib",
        "Algieba",
        "Alnilam",
        "Aoede",
        "Autonoe",
        "Callirrhoe",
        "Charon",
        "Despina",
        "Enceladus",
        "Erinome",
        "Fenrir",
        "Gacrux",
        "Iapetus",
        "Kore",
        "Laomedeia",
        "Leda",
        "Orus",
        "Puck",
        "Pulcherrima",
        "Rasalgethi",
        "Sadachbia",
        "Sadaltager",
        "Schedar",
        "Sulafat",
        "Umbriel",
        "Vindemiatrix",
        "Zephyr",
        "Zubenelgenubi",
    }
)


class UpstreamMode(StrEnum):
    AUTO = "auto"
    GOOGLE = "google"
    SIMULATOR = "simulator"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)

    GEMINI_API_KEY: SecretStr | None = None
    GEMINI_BASE_URL: str | None = None
    GEMINI_CA_FILE: Path | None = None
    GEMINI_LIVE_MODEL: str = DEFAULT_LIVE_MODEL
    GEMINI_EXTRACTION_MODEL: str = DEFAULT_EXTRACTION_MODEL
    # auto: the built-in simulator when no key is configured, Google otherwise.
    UPSTREAM: UpstreamMode = UpstreamMode.AUTO
    SIMULATOR_SCENARIO: str = "simple_visit"
    # 1.0 paces the simulator's speech at real time; smaller is faster (tests, demos).
    SIMULATOR_TIME_SCALE: float = Field(1.0, gt=0, le=10)

    HOST: str = "127.0.0.1"
    PORT: int = Field(8000, ge=1, le=65535)
    CORS_ORIGINS: Annotated[list[str], NoDecode] = [
        "http://localhost:8000",
        "http://127.0.0.1:8000",
    ]
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    CLINIC_NAME: str = Field("Medical Center", min_length=1, max_length=120)
    SPECIALTY: str = Field("Primary Care", min_length=1, max_length=120)
    GREETING_STYLE: Literal["warm", "professional", "friendly"] = "warm"
    VOICE_MODEL: str = "Puck"

    SAVE_CONVERSATIONS: bool = True
    CONVERSATION_STORAGE_PATH: Path = Path("./conversations")
    ENABLE_SESSION_LOGS: bool = True
    SESSION_LOG_PATH: Path = Path("./session_logs")
    # The audit log records events without their content unless this is on.
    AUDIT_LOG_CONTENT: bool = False

    ACCESS_TOKEN: SecretStr | None = None
    MAX_SESSIONS: int = Field(50, ge=1)
    MAX_SESSIONS_PER_CLIENT: int = Field(5, ge=1)
    IDLE_TIMEOUT_SECONDS: float = Field(120.0, gt=0)
    MAX_BINARY_FRAME_BYTES: int = Field(64 * 1024, ge=2)
    MAX_TEXT_FRAME_BYTES: int = Field(8 * 1024, ge=64)
    EXTRACTION_TIMEOUT_SECONDS: float = Field(30.0, gt=0)
    FALLBACK_EXTRACTION_TURNS: int = Field(10, ge=1)
    # Extract in the background every N finalized turns so the page's record fills while the
    # patient talks (one generateContent call each time); 0 waits for complete_intake.
    LIVE_EXTRACTION_TURNS: int = Field(4, ge=0)
    RECONNECT_ATTEMPTS: int = Field(5, ge=0)
    SHUTDOWN_GRACE_SECONDS: float = Field(10.0, ge=0)

    # The edge (issue 12): which names and origins are served, which proxy is trusted, the docs.
    # Empty: HOST plus localhost, 127.0.0.1 and ::1. Comma list; `*.example.org` matches subdomains.
    ALLOWED_HOSTS: Annotated[list[str], NoDecode] = []
    # Where patients reach the server (scheme, host, port); unset: http://HOST:PORT.
    PUBLIC_ORIGIN: str | None = None
    # Proxies whose X-Forwarded-For/-Proto are believed; empty trusts none (the peer address counts).
    FORWARDED_ALLOW_IPS: Annotated[list[str], NoDecode] = []
    # Unset: a browser's ?api_key= is used only when the server holds no key of its own.
    ALLOW_BROWSER_KEY: bool | None = None
    ENABLE_DOCS: bool = False
    # Audio goes upstream at most this many times real time (after a 0.5 s burst); the rest is
    # dropped with `audio_too_fast`. Upstream audio is billed per second.
    MAX_AUDIO_SPEED: float = Field(1.2, ge=1.0)
    HEADER_TIMEOUT_SECONDS: float = Field(10.0, gt=0, le=120)

    @field_validator("ALLOWED_HOSTS", "FORWARDED_ALLOW_IPS", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("PUBLIC_ORIGIN", mode="before")
    @classmethod
    def _check_public_origin(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// origin")
        return value.rstrip("/")

    @property
    def allowed_hosts(self) -> list[str]:
        return self.ALLOWED_HOSTS or [self.HOST, "localhost", "127.0.0.1", "::1"]

    @property
    def public_origin(self) -> str:
        if self.PUBLIC_ORIGIN:
            return self.PUBLIC_ORIGIN
        host = "localhost" if self.HOST in ("0.0.0.0", "::") else self.HOST
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.PORT}"

    @field_validator("GEMINI_API_KEY", "ACCESS_TOKEN", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("GEMINI_BASE_URL", mode="before")
    @classmethod
    def _check_base_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("GEMINI_CA_FILE", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("GEMINI_CA_FILE")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("CORS_ORIGINS")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"origin {origin!r} must start with http:// or https://")
        return value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("GREETING_STYLE", mode="before")
    @classmethod
    def _lower_style(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("VOICE_MODEL")
    @classmethod
    def _known_voice(cls, value: str) -> str:
        for voice in KNOWN_VOICES:
            if voice.lower() == value.lower():
                return voice
        raise ValueError(f"unknown voice {value!r}; choose one of {', '.join(sorted(KNOWN_VOICES))}")

    @property
    def uses_simulator(self) -> bool:
        if self.UPSTREAM is UpstreamMode.SIMULATOR:
            return True
        if self.UPSTREAM is UpstreamMode.GOOGLE:
            return False
        return self.GEMINI_API_KEY is None and self.GEMINI_BASE_URL is None


@lru_cache
def get_settings() -> Settings:
    return Settings()
