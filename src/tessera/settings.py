"""Runtime settings: ``TESSERA_*`` environment variables, then an optional TOML file.

Every knob has a safe default for the embedded mode (SQLite in the data directory,
in-process workers and rate limits). Production sets ``TESSERA_MODE=production`` and a
PostgreSQL URL; :func:`Settings.check_production` refuses unsafe combinations.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_", extra="ignore")

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL the application uses. Default: SQLite file in the data dir.",
    )
    migration_database_url: str | None = Field(
        default=None,
        description="URL of the role owning the tables (runs migrations). Default: database_url.",
    )
    db_pool_size: int = 20
    db_read_pool_size: int = Field(
        default=64,
        description="PostgreSQL: connections of the one-round-trip reader (Repository.read), "
        "opened as concurrent reads need them. At least the reads one process serves at once: "
        "a read that waits for one costs more CPU than the read itself.",
    )
    db_echo: bool = False
    gc_tuning: bool = Field(
        default=True,
        description="Serving processes freeze start-up objects and collect garbage less often.",
    )

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    master_key: SecretStr | None = Field(
        default=None, description="Base64 32-byte master key; default: keys/master.key in data dir."
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signs session and CSRF tokens; default: keys/secret.key."
    )

    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    argon2_parallelism: int = 4

    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    cookie_secure: bool = False
    login_max_failures: int = 5
    login_lockout_minutes: int = 15

    rate_limit_backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rate_limit_per_key: int = Field(default=6000, description="Requests per minute per API key.")
    rate_limit_per_ip: int = Field(default=3000, description="Requests per minute per client IP.")
    max_body_bytes: int = 10 * 1024 * 1024
    # File uploads to registered upload paths (contact imports) may be this large.
    max_upload_bytes: int = 200 * 1024 * 1024

    idempotency_ttl_hours: int = 24
    webhook_allow_private: bool = False
    embedded_workers: bool = True
    worker_concurrency: int = 4

    demo_password: str = "tessera-demo-1"

    bounce_smtp_port: int | None = Field(
        default=None,
        description="Port of the bounce mailbox (SMTP receiver of DSNs) the gateway runs; unset: none.",
    )
    bounce_smtp_host: str = Field(default="127.0.0.1", description="Address the bounce mailbox listens on.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("TESSERA_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tessera.db').resolve()}"

    @property
    def effective_migration_url(self) -> str:
        return self.migration_database_url or self.effective_database_url

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.keys_dir, self.files_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)

    def check_production(self) -> list[str]:
        """Problems that make this configuration unfit for production."""
        problems = []
        if self.mode == "production":
            if not self.is_postgres:
                problems.append("production mode needs a PostgreSQL database_url")
            if not self.cookie_secure:
                problems.append("production mode needs cookie_secure=true (HTTPS)")
            if self.rate_limit_backend != "redis":
                problems.append("production mode needs rate_limit_backend=redis")
        return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
