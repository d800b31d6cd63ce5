"""Settings for the intake server, read from the environment and `.env`."""

import json
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_LIVE_MODEL = "gemini-3.8-live"
DEFAULT_EXTRACTION_MODEL = "gemini-3.8-flash"

# Said by a patient describing an emergency now; see README "Emergencies".
DEFAULT_RED_FLAG_PHRASES = (
    "chest pain",
    "crushing chest",
    "heart attack",
    "having a stroke",
    "face is drooping",
    "slurred speech",
    "severe bleeding",
    "bleeding heavily",
    "won't stop bleeding",
    "throat is closing",
    "throat is swelling",
    "can't breathe right now",
    "struggling to breathe",
    "suicidal",
    "kill myself",
    "end my life",
    "want to die",
    "overdose",
    "passed out",
    "seizure",
)

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
    # The patient's turn ended and the model has said nothing for this long: nudge it once, then
    # tell the patient (`assistant_stalled`).
    STALL_TIMEOUT_SECONDS: float = Field(6.0, gt=0)
    # After the intake is saved and the model's closing words, the session ends this long later
    # unless the patient speaks again.
    END_GRACE_SECONDS: float = Field(8.0, ge=0)
    SHUTDOWN_GRACE_SECONDS: float = Field(10.0, ge=0)
    # A dropped connection (or a restart) leaves the intake resumable this long; then it is
    # abandoned. 0: a drop ends the intake.
    RESUME_GRACE_SECONDS: float = Field(120.0, ge=0)

    # Storage and the staff API (issue 10).
    DATA_DIR: Path = Path("./data")
    # Unset: SQLite at DATA_DIR/intake.db; postgresql+asyncpg://user@host/db for PostgreSQL.
    DATABASE_URL: SecretStr | None = None
    DB_AUTO_MIGRATE: bool = True
    # "name:token" pairs, comma-separated; each name is recorded in the audit of what it read or changed.
    STAFF_TOKENS: Annotated[dict[str, SecretStr], NoDecode] = {}
    RETENTION_DAYS: int = Field(30, ge=1)
    PURGE_INTERVAL_SECONDS: float = Field(3600.0, gt=0)

    # Models: terms (e.g. the clinic's common medication names) that bias the patient's
    # transcription, sent where the Live model takes a custom vocabulary. Comma-separated.
    TRANSCRIPTION_VOCABULARY: Annotated[list[str], NoDecode] = []

    @field_validator("TRANSCRIPTION_VOCABULARY", mode="before")
    @classmethod
    def _split_vocabulary(cls, value: object) -> object:
        if isinstance(value, str):
            return [term.strip() for term in value.split(",") if term.strip()]
        return value

    # Waiting-room tablet: HTTPS on the clinic network, and a kiosk that forgets each patient.
    TLS_CERT_FILE: Path | None = None
    TLS_KEY_FILE: Path | None = None
    # Make (once, in DATA_DIR/tls) a certificate for this machine's host names and LAN addresses.
    TLS_SELF_SIGNED: bool = False
    KIOSK_MODE: bool = False
    KIOSK_REVIEW_SECONDS: float = Field(30.0, ge=0, le=3600)
    KIOSK_IDLE_SECONDS: float = Field(90.0, gt=0, le=3600)
    KIOSK_IDLE_ANSWER_SECONDS: float = Field(20.0, gt=0, le=600)

    # The clinic's side (issue 11): red flags, staff notifications.
    # Shown to the patient, full width, when an emergency is flagged.
    EMERGENCY_INSTRUCTIONS: str = Field(
        "This may be an emergency. Call your local emergency number (911 in the US) now, "
        "or tell the front desk right away.",
        min_length=1,
        max_length=500,
    )
    # Comma-separated; matched case-insensitively as whole words in each finalized patient turn.
    RED_FLAG_PHRASES: Annotated[list[str], NoDecode] = list(DEFAULT_RED_FLAG_PHRASES)
    NOTIFY_WEBHOOK_URL: str | None = None
    NOTIFY_WEBHOOK_SECRET: SecretStr | None = None
    # smtp://user:password@host:587 (STARTTLS when offered) or smtps://host:465.
    SMTP_URL: SecretStr | None = None
    NOTIFY_EMAIL_TO: Annotated[list[str], NoDecode] = []
    NOTIFY_EMAIL_FROM: str = "intake@localhost"
    # Off: ids, status and flags only. On: also the chief complaint and the reason for an emergency.
    NOTIFY_INCLUDE_SUMMARY: bool = False
    NOTIFY_ATTEMPTS: int = Field(5, ge=1, le=20)
    NOTIFY_BACKOFF_SECONDS: float = Field(2.0, gt=0, le=600)

    @field_validator("RED_FLAG_PHRASES", "NOTIFY_EMAIL_TO", mode="before")
    @classmethod
    def _split_clinic_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("NOTIFY_WEBHOOK_URL", "NOTIFY_WEBHOOK_SECRET", "SMTP_URL", mode="before")
    @classmethod
    def _blank_notify_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("NOTIFY_WEBHOOK_URL")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> "Settings":
        if self.NOTIFY_WEBHOOK_URL and self.NOTIFY_WEBHOOK_SECRET is None:
            raise ValueError("NOTIFY_WEBHOOK_URL needs NOTIFY_WEBHOOK_SECRET: every delivery is signed")
        if self.SMTP_URL is not None and not self.NOTIFY_EMAIL_TO:
            raise ValueError("SMTP_URL needs NOTIFY_EMAIL_TO")
        return self

    @field_validator("TLS_CERT_FILE", "TLS_KEY_FILE", mode="before")
    @classmethod
    def _blank_tls_file_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("TLS_CERT_FILE", "TLS_KEY_FILE")
    @classmethod
    def _tls_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> "Settings":
        if (self.TLS_CERT_FILE is None) != (self.TLS_KEY_FILE is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE: set both, or neither")
        if self.TLS_SELF_SIGNED and self.TLS_CERT_FILE is not None:
            raise ValueError("TLS_SELF_SIGNED: set it, or TLS_CERT_FILE and TLS_KEY_FILE, not both")
        return self

    @property
    def serves_tls(self) -> bool:
        return self.TLS_SELF_SIGNED or self.TLS_CERT_FILE is not None

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
    # Metrics and scale-out (issue 14). Unset METRICS_TOKEN: /metrics answers 404.
    METRICS_TOKEN: SecretStr | None = None
    # Processes `python main.py` runs (uvicorn workers); each holds its own sessions.
    WORKERS: int = Field(1, ge=1, le=64)
    # Set: MAX_SESSIONS and MAX_SESSIONS_PER_CLIENT hold across every process using this Redis.
    REDIS_URL: SecretStr | None = None
    # Keys in Redis start with this, so several deployments can share one Redis.
    REDIS_KEY_PREFIX: str = Field("intake", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

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
        scheme = "https" if self.serves_tls else "http"
        return f"{scheme}://{host}:{self.PORT}"

    @field_validator(
        "GEMINI_API_KEY", "ACCESS_TOKEN", "DATABASE_URL", "METRICS_TOKEN", "REDIS_URL", mode="before"
    )
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

    @field_validator("STAFF_TOKENS", mode="before")
    @classmethod
    def _split_staff_tokens(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        tokens: dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            name, sep, token = pair.partition(":")
            if not sep or not name.strip():
                raise ValueError("each entry must be name:token")
            if name.strip() in tokens:
                raise ValueError(f"staff name {name.strip()!r} appears twice")
            tokens[name.strip()] = token.strip()
        return tokens

    @field_validator("STAFF_TOKENS")
    @classmethod
    def _strong_staff_tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        secrets = [token.get_secret_value() for token in value.values()]
        if any(len(secret) < 16 for secret in secrets):
            raise ValueError("each staff token must be at least 16 characters")
        if len(set(secrets)) != len(secrets):
            raise ValueError("two staff members share a token")
        return value

    @model_validator(mode="after")
    def _patient_and_staff_tokens_differ(self) -> "Settings":
        if self.ACCESS_TOKEN is not None and any(
            token.get_secret_value() == self.ACCESS_TOKEN.get_secret_value()
            for token in self.STAFF_TOKENS.values()
        ):
            raise ValueError("ACCESS_TOKEN must differ from every staff token")
        return self

    @property
    def database_url(self) -> str:
        if self.DATABASE_URL is not None:
            return self.DATABASE_URL.get_secret_value()
        return f"sqlite+aiosqlite:///{self.DATA_DIR / 'intake.db'}"

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
