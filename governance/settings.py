"""Settings from the environment, in one place.

Every field reads ``COMMONS_<FIELD>`` (e.g. ``COMMONS_DATA_DIR``). docs/operations.md lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from unlearning import contract
from unlearning.contract import DEFAULT_METHOD

DEV_SECRET = "dev-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMONS_", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="development allows the built-in secret; production refuses it.",
    )
    data_dir: Path = Field(
        Path(".commons"),
        description="Where the embedded database, the audit signing key and the artifact store live.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; overrides the embedded SQLite database in data_dir "
        "(e.g. postgresql+psycopg://user:pass@host/db).",
    )
    secret_key: str = Field(DEV_SECRET, description="Signs session cookies and CSRF tokens.")
    host: str = Field("127.0.0.1", description="Default bind address of `commons serve`.")
    port: int = Field(8000, description="Default port of `commons serve`.")
    api_url: str | None = Field(
        None,
        description="The service the CLI's API commands call (default: http://COMMONS_HOST:COMMONS_PORT, "
        "127.0.0.1 for a wildcard host).",
    )
    api_token: str | None = Field(None, description="API token the CLI's API commands authenticate with.")
    triage_approvals_required: int = Field(2, ge=1, description="Reviewer approvals that open the vote.")
    triage_days: float = Field(7, gt=0, description="Days reviewers have to triage before it expires.")
    voting_days: float = Field(7, gt=0, description="Default length of a member vote, in days.")
    quorum: float = Field(0.3, gt=0, le=1, description="Share of the frozen electorate that must vote.")
    support_threshold: float = Field(
        0.6, gt=0, le=1, description="approve / (approve + object) needed to pass."
    )
    extension_window_hours: float = Field(
        24, ge=0, description="Quorum reached in this last stretch extends the deadline once."
    )
    extension_hours: float = Field(24, ge=0, description="How long that one extension lasts.")
    council_days: float = Field(7, gt=0, description="Days the council has to ratify or veto.")
    appeal_days: float = Field(3, gt=0, description="Length of the appeal window, in days.")
    delegation_max_depth: int = Field(
        3,
        ge=1,
        le=20,
        description="Hops a delegated vote may travel to a voting delegate; beyond, it is not cast.",
    )

    execution_mode: Literal["in-process", "simulation", "deployment"] = Field(
        "in-process",
        description="How unlearning jobs run the Flower apps: in this process (no Ray), Flower's simulation "
        "engine, or a SuperLink with one SuperNode per member node (COMMONS_FLOWER_SUPERLINK).",
    )
    dataset_dir: Path | None = Field(
        None,
        description="The federation's dataset for in-process and simulation runs (manifest.json + one "
        "directory per node); default data_dir/dataset.",
    )
    node_data_dir: Path | None = Field(
        None,
        description="In-process and simulation runs: the folder holding each node's own data folder (<dir>/<the manifest's "
        "node path>, the node's data-path as a SuperNode's), so that the dataset directory holds only the "
        "published manifest; default data_dir/nodes when it exists (the demo's layout), else the dataset "
        "directory (nodes' folders beside the manifest).",
    )
    evaluation_group_by: str = Field(
        "category",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="The record field whose values are the groups of the community evaluation of every "
        "candidate (category, kind, topic, tags, ...; a list-valued field puts a record in each of its groups).",
    )
    base_model_version: str | None = Field(
        None,
        description="The model version unlearning jobs start from when no version has been released yet.",
    )
    flower_superlink: str = Field(
        "127.0.0.1:9093",
        description="The SuperLink's Control API address (host:port) for COMMONS_EXECUTION_MODE=deployment.",
    )
    flower_root_certificates: Path | None = Field(
        None, description="CA bundle (PEM) that verifies the SuperLink's TLS certificate."
    )
    flower_insecure: bool | None = Field(
        None,
        description="Plain HTTP to the SuperLink (default: true unless root certificates are set).",
    )
    flower_job_timeout: float = Field(
        2700, gt=0, description="Seconds a simulation or deployment run may take before it is stopped."
    )
    flower_exchange_timeout: float = Field(
        300,
        gt=0,
        description="Seconds one message exchange of a job may take before its missing replies are re-sent.",
    )
    flower_node_timeout: float = Field(
        120,
        gt=0,
        description="Seconds a job waits for a missing or failed node to (re)appear before it fails naming the node.",
    )
    flower_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between two run-status polls of the SuperLink."
    )
    simulation_num_cpus: int | None = Field(
        None, ge=1, description="CPUs Ray may use for simulation ClientApps (default: min(cores, nodes))."
    )
    unlearning_method: str = Field(
        DEFAULT_METHOD, description="Default method of unlearning jobs (a method of unlearning.contract)."
    )
    job_lease_seconds: float = Field(
        60, gt=1, description="A worker that stops renewing its lease loses the job."
    )
    job_max_attempts: int = Field(3, ge=1, description="Attempts before a job fails for good.")
    verify_with_reference: bool = Field(
        True,
        description="Retrain a reference without the forget data for every job's verification (gold standard).",
    )
    embedded_worker: bool = Field(True, description="`commons serve` runs one job worker inside the service.")
    worker_poll_seconds: float = Field(2, gt=0, description="How often an idle worker looks for jobs.")

    @field_validator("unlearning_method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in contract.METHOD_SPECS:
            raise ValueError(
                f"unknown unlearning method {value!r}; known: {', '.join(contract.method_names())}"
            )
        return value

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment != "development" and self.secret_key == DEV_SECRET:
            raise ValueError(
                f"COMMONS_SECRET_KEY must be set to a secret of your own when COMMONS_ENVIRONMENT={self.environment}"
                " (the built-in key is for development only)"
            )
        if self.environment == "production" and len(self.secret_key) < 32:
            raise ValueError("COMMONS_SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'commons.db').resolve()}"

    @property
    def effective_api_url(self) -> str:
        """COMMONS_API_URL, else the address `commons serve` listens on (so the CLI follows COMMONS_PORT)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / "audit-signing-key.pem"

    @property
    def verifier_key_path(self) -> Path:
        """The Ed25519 key that signs verification reports (distinct from the audit key)."""
        return self.data_dir / "verifier-signing-key.pem"

    @property
    def model_signing_key_path(self) -> Path:
        """The ECDSA P-256 key that signs released versions in the OpenSSF Model Signing format."""
        return self.data_dir / "model-signing-key.pem"

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def effective_dataset_dir(self) -> Path:
        return self.dataset_dir or self.data_dir / "dataset"

    @property
    def nodes_home(self) -> Path:
        """Where each node's own data folder is laid out (the demo's members' machines): data_dir/nodes."""
        return self.node_data_dir or self.data_dir / "nodes"

    @property
    def effective_node_data_dir(self) -> Path | None:
        """The folder under which the in-process nodes find their data (see ``node_data_dir``); None: in
        their folders beside the manifest, in the dataset directory."""
        if self.node_data_dir is not None or self.nodes_home.is_dir():
            return self.nodes_home
        return None


def get_settings() -> Settings:
    return Settings()
