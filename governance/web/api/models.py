"""The model registry and the release gate: model versions with lineage and verification reports, and the
verdict CI asks for before it ships a version (``commons gate``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, get, post
from litestar.params import Parameter, QueryParameter

from governance.bounds import Filter, Offset, OptionalId, VersionRef
from governance.domain.review import ActorView
from governance.registry_schemas import (
    ModelVersionCreate,
    ModelVersionDetail,
    ModelVersionPublic,
    OverrideIn,
    OverridePublic,
    ReasonIn,
    ReportIn,
    VerdictPublic,
)
from governance.services import gate, registry
from governance.services.context import Ctx


class ModelController(Controller):
    path = "/api/v1/models"
    tags = ["models"]

    @get("/", sync_to_thread=True)
    def list_models(
        self,
        ctx: Ctx,
        actor: ActorView,
        state_filter: Annotated[Filter, QueryParameter(name="state")] = None,
        proposal_id: OptionalId = None,
        limit: int = Parameter(default=100, ge=1, le=500),
        offset: Offset = 0,
    ) -> list[ModelVersionPublic]:
        """Model versions, newest first (state: candidate, verified, failed, released, rejected)."""
        return registry.list_versions(
            ctx, state=state_filter, proposal_id=proposal_id, limit=limit, offset=offset
        )

    @post("/", sync_to_thread=True)
    def register(self, ctx: Ctx, actor: ActorView, data: ModelVersionCreate) -> ModelVersionPublic:
        """Register a model version of the artifact store (admins and the job worker)."""
        return registry.register_version(ctx, actor, data)

    @get("/{version:str}", sync_to_thread=True)
    def get_model(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> ModelVersionDetail:
        """One version with its lineage and its latest verification report (computed on this exact model)."""
        return registry.get_version(ctx, version)

    @get("/{version:str}/report", sync_to_thread=True)
    def report(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> dict[str, Any]:
        """The latest verification report as JSON."""
        return registry.report_of(ctx, version)

    @get("/{version:str}/report.html", sync_to_thread=True, media_type=MediaType.HTML)
    def report_html(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> str:
        """The latest verification report as a self-contained HTML page."""
        from unlearning.api import report_html_page

        return report_html_page(ctx.settings.artifact_dir, registry.report_of(ctx, version))

    @get("/{version:str}/regression-checks", sync_to_thread=True)
    def regression_checks(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> list[dict[str, Any]]:
        """The earlier released unlearnings a verification of this version must re-check (VerifySpec.regressions)."""
        from governance.db.engine import read_session

        with read_session(ctx.engine) as s:
            return registry.regression_checks(s, version)

    @post("/{version:str}/verification", sync_to_thread=True)
    def attach_report(
        self, ctx: Ctx, actor: ActorView, version: VersionRef, data: ReportIn
    ) -> ModelVersionPublic:
        """Record a verification report; refused (403) unless the service's verifier signed it, and (409) unless
        it was computed on this version's content hash. To verify a version, ask for it: ``POST .../verify``."""
        return registry.attach_report(ctx, actor, version, data.report)

    @post("/{version:str}/verify", sync_to_thread=True)
    def verify(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> dict[str, Any]:
        """Queue a verification of a stored version (the council or an admin): the job worker verifies it and
        signs the report; the gate allows nothing made outside the service before that."""
        return gate.queue_verification(ctx, actor, version)

    @post("/{version:str}/override", sync_to_thread=True)
    def override(self, ctx: Ctx, actor: ActorView, version: VersionRef, data: OverrideIn) -> OverridePublic:
        """A council member proposes or seconds an override of the gate, with a written reason; granted at a
        council majority, audited, and shown as an override in every verdict and bundle."""
        return gate.override(ctx, actor, version, data.reason)

    @get("/{version:str}/overrides", sync_to_thread=True)
    def overrides(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> list[OverridePublic]:
        """The overrides of this version, proposed and granted."""
        return gate.overrides_of(ctx, version)

    @post("/{version:str}/release", sync_to_thread=True)
    def release(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> ModelVersionPublic:
        """Release a verified version (refused unless the gate allows it)."""
        return gate.release(ctx, actor, version)

    @post("/{version:str}/reject", sync_to_thread=True)
    def reject(self, ctx: Ctx, actor: ActorView, version: VersionRef, data: ReasonIn) -> ModelVersionPublic:
        return registry.reject(ctx, actor, version, data.reason)


class ReleaseController(Controller):
    path = "/api/v1/releases"
    tags = ["releases"]

    @get("/{version:str}/verdict", sync_to_thread=True)
    def verdict(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> VerdictPublic:
        """allow / deny / pending for releasing ``version``, with the reasons, the proposals it covers, the
        acceptance-test and regression results, a signed audit checkpoint and inclusion proofs. Recorded in
        the audit log. ``commons gate VERSION`` exits 0 / 1 / 2 on allow / deny / pending."""
        return gate.verdict(ctx, version, actor)

    @get("/{version:str}/bundle", sync_to_thread=True)
    def bundle(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> dict[str, Any]:
        """The provenance bundle: proposal, tally, council decisions, job config, artifact hashes before and
        after, verification report, verdict, and audit entries with inclusion proofs against a signed
        checkpoint. Check it offline with ``commons release verify-bundle FILE``."""
        from governance.services import bundle

        return bundle.build(ctx, version, actor)
