"""Settings base for every ghpo service: pydantic-settings read from `GHPO_<SERVICE>_*` environment
variables, every field bounded and described.

A service subclasses `ServiceSettings` and sets its own prefix:

    class Settings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="GHPO_VERIFIER_")
        workers: int = Field(2, ge=1, le=64, description="Verification worker processes.")

`build_settings(Settings, port=0, ...)` builds one with overrides and turns a validation failure into a
`SettingsError` whose message names the environment variable, the field and the allowed range.
With `environment="production"` a missing or weak token is refused; in dev/test, `token=None` disables
auth. A service that takes the GHPO algorithm settings subclasses `GHPOServiceSettings` instead: its
nested `ghpo` (GHPOConfig) comes from the GHPO_ALGORITHM_* variables that every component reads
(ghpo.shared.algorithm.environment), never from the service's own prefix. This module does not read config
files (the trainer's TOML config is separate).
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ghpo.shared.algorithm import environment as algorithm_env
from ghpo.shared.algorithm.config import ConfigError, GHPOConfig

MiB = 1024 * 1024
MIN_PRODUCTION_TOKEN_CHARS = 32
_PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "change-me", "secret", "token", "password", "dev", "test", "ghpo"}
)


class SettingsError(ValueError):
    """Invalid configuration; the message names each bad key (env var and field) and what is allowed."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GHPO_", extra="forbid", validate_default=True)

    environment: Literal["dev", "test", "production"] = Field(
        "dev", description="Deployment kind; 'production' requires a strong token."
    )
    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    token: SecretStr | None = Field(
        None, description="Bearer token required between services; None disables auth (dev/test only)."
    )
    max_body_bytes: int = Field(
        16 * MiB, ge=1024, le=4096 * MiB, description="Largest request body accepted; larger gets 413."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Root log level."
    )
    log_json: bool = Field(False, description="Write logs as JSON lines instead of text.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # GHPO_X_TOKEN= (set but empty) means "no token"

    @model_validator(mode="after")
    def _production_needs_strong_token(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        if self.token is None:
            raise ValueError("token is required when environment is 'production'")
        value = self.token.get_secret_value()
        if (
            len(value) < MIN_PRODUCTION_TOKEN_CHARS
            or value.lower() in _PLACEHOLDER_TOKENS
            or len(set(value)) < 8
        ):
            raise ValueError(
                f"token is too weak for production: use at least {MIN_PRODUCTION_TOKEN_CHARS} random "
                "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return self

    @property
    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None


class _AlgorithmEnvironment(PydanticBaseSettingsSource):
    """The `ghpo` field from the GHPO_ALGORITHM_* variables. A GHPO key under the service's own prefix
    (GHPO_BROKER_HINT_LADDER, or GHPO_BROKER_GHPO) is refused rather than ignored: that was the form
    before one block served every component, and silently ignoring it would change a deployment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ builds the whole field at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.settings_cls.model_config.get("env_prefix", "")).upper()
        for key in ("ghpo", *GHPOConfig.model_fields):
            name = f"{prefix}{key.upper()}"
            if name in os.environ:
                where = algorithm_env.ENV_PREFIX + "<KEY>" if key == "ghpo" else algorithm_env.env_name(key)
                raise SettingsError(
                    f"{name} is not read: every component takes the GHPO settings from {where}"
                )
        try:
            values = algorithm_env.from_environment(os.environ)
        except ConfigError as exc:
            raise SettingsError(str(exc)) from None
        return {"ghpo": values} if values else {}


class GHPOServiceSettings(ServiceSettings):
    """Settings of a service that takes the GHPO algorithm settings (the broker, the rollout server)."""

    ghpo: GHPOConfig = Field(
        default_factory=GHPOConfig,
        description="The GHPO algorithm settings, from GHPO_ALGORITHM_<KEY> (shared by every component).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Called in this order, so a service-prefixed GHPO key is refused before env_settings reads it.
        algorithm = _AlgorithmEnvironment(settings_cls)
        return init_settings, algorithm, env_settings, dotenv_settings, file_secret_settings


S = TypeVar("S", bound=ServiceSettings)


def env_name(cls: type[ServiceSettings], field: str) -> str:
    """The variable a field is read from; `ghpo.<key>` is GHPO_ALGORITHM_<KEY>, whatever the service."""
    if field.split(".")[0] == "ghpo" and issubclass(cls, GHPOServiceSettings):
        key = field.removeprefix("ghpo").removeprefix(".").split(".")[0]
        return algorithm_env.env_name(key) if key else algorithm_env.ENV_PREFIX + "*"
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def build_settings(cls: type[S], /, **overrides: Any) -> S:
    """`cls(**overrides)` (overrides beat the environment), with errors that name the env var."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            key = f"{env_name(cls, loc)} ({loc})" if loc else cls.__name__
            # never echo a token; a model-level error's input is the whole config, token included
            shown = f" (got {err.get('input')!r})" if loc and "token" not in loc else ""
            problems.append(f"{key}: {err.get('msg')}{shown}")
        raise SettingsError(f"invalid {cls.__name__}: " + "; ".join(problems)) from exc
