"""Start-up checks that explain themselves: one line per problem, exit code 2, no traceback."""

import errno
import logging
import socket
import ssl
import sys
import tempfile
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import annotated_types
from dotenv.parser import parse_stream
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from config import Settings

EXIT_BAD_SETTINGS = 2


class StartupError(Exception):
    """Problems found before serving, each already worded as one line for the operator."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def checked_start(env_file: Path = Path(".env")) -> tuple[Settings, socket.socket]:
    """Settings, a writable DATA_DIR and the bound listening socket, or exit 2 with the reasons."""
    try:
        settings = load_settings(env_file)
        check_tls_files(settings)
        prepare_data_dir(settings.DATA_DIR)
        listener = bind_listener(settings.HOST, settings.PORT)
    except StartupError as error:
        refuse(error.problems)
    return settings, listener


def refuse(problems: Iterable[str]) -> NoReturn:
    for line in problems:
        print(line, file=sys.stderr)
    raise SystemExit(EXIT_BAD_SETTINGS)


def load_settings(env_file: Path = Path(".env")) -> Settings:
    problems = unreadable_env_lines(env_file)
    # Reported above in our own words; python-dotenv's warning would say it a second time.
    logging.getLogger("dotenv.main").setLevel(logging.ERROR)
    settings: Settings | None = None
    try:
        settings = Settings(_env_file=env_file)
    except ValidationError as error:
        problems += [describe(detail) for detail in error.errors()]
    except SettingsError as error:
        problems.append(str(error))
    if problems or settings is None:
        raise StartupError(problems)
    return settings


def unreadable_env_lines(env_file: Path) -> list[str]:
    # python-dotenv skips a line it cannot parse with only a log warning; the setting on it
    # would silently fall back to its default.
    if not env_file.is_file():
        return []
    with env_file.open(encoding="utf-8", errors="replace") as stream:
        return [
            f"{env_file.name} line {binding.original.line}: cannot be read as NAME=value, "
            f"got {binding.original.string.strip()!r}"
            for binding in parse_stream(stream)
            if binding.error
        ]


def describe(detail: ErrorDetails) -> str:
    name = ".".join(str(part) for part in detail["loc"])
    given = detail.get("input")
    got = f", got {given!r}" if isinstance(given, str | int | float) else ""
    if detail["type"] == "value_error":
        reason = detail["msg"].removeprefix("Value error, ")
        if isinstance(given, str) and given in reason:
            got = ""
        return f"{name}: {reason}{got}" if name else reason
    field = Settings.model_fields.get(name)
    expected = _expectation(field.annotation, field.metadata) if field else None
    return f"{name}: {expected or detail['msg'][:1].lower() + detail['msg'][1:]}{got}"


def _expectation(annotation: Any, metadata: list[Any]) -> str | None:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "must be one of " + ", ".join(str(arg) for arg in args)
    if typing.get_args(annotation) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return "must be true or false"
    kind = {int: "an integer", float: "a number"}.get(annotation)
    if kind is None:
        return None
    low = next((m for m in metadata if isinstance(m, annotated_types.Ge | annotated_types.Gt)), None)
    high = next((m for m in metadata if isinstance(m, annotated_types.Le | annotated_types.Lt)), None)
    if isinstance(low, annotated_types.Ge) and isinstance(high, annotated_types.Le):
        return f"must be {kind} between {low.ge} and {high.le}"
    bounds = []
    if isinstance(low, annotated_types.Ge):
        bounds.append(f"at least {low.ge}")
    elif isinstance(low, annotated_types.Gt):
        bounds.append(f"greater than {low.gt}")
    if isinstance(high, annotated_types.Le):
        bounds.append(f"at most {high.le}")
    elif isinstance(high, annotated_types.Lt):
        bounds.append(f"less than {high.lt}")
    return ", ".join([f"must be {kind}", " and ".join(bounds)]) if bounds else f"must be {kind}"


def check_tls_files(settings: Settings) -> None:
    if settings.TLS_CERT_FILE is None or settings.TLS_KEY_FILE is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.TLS_CERT_FILE, settings.TLS_KEY_FILE
        )
    except ssl.SSLError:
        reason = "not a PEM certificate chain and its matching private key"
    except OSError as error:
        reason = error.strerror or str(error)
    else:
        return
    raise StartupError([f"TLS_CERT_FILE / TLS_KEY_FILE: cannot use them ({reason})"])


def prepare_data_dir(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise StartupError([f"DATA_DIR: {directory} is not a directory"])
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason: str = error.strerror or str(error)
        raise StartupError([f"DATA_DIR: cannot write to {directory} ({reason})"]) from None


def bind_listener(host: str, port: int) -> socket.socket:
    # Bound here, before the app starts, so a busy port is the first and only thing reported.
    # The family uvicorn would choose for the same HOST.
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            reason = "is already in use (is the server already running?); choose another PORT"
            raise StartupError([f"PORT: {port} on {host} {reason}"]) from None
        raise StartupError([f"HOST: cannot listen on {host}:{port} ({error.strerror})"]) from None
    return listener
