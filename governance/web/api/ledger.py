"""The contribution ledger (docs/ledger.md): is a data source in the released model (with the lineage and the
audit proofs behind the answer), and each node's contribution to a training job, also as open data (JSON and
CSV, no licence terms: the community's own figures)."""

from __future__ import annotations

from litestar import Controller, Response, get

from governance.bounds import Id, VersionRef
from governance.domain.review import ActorView
from governance.ledger_schemas import ContributionRow, DataSourceLedger, ModelContribution
from governance.services import ledger
from governance.services.context import Ctx


class LedgerController(Controller):
    path = "/api/v1"
    tags = ["ledger"]

    @get("/data-sources/{source_id:int}/ledger", sync_to_thread=True)
    def data_source_ledger(self, ctx: Ctx, actor: ActorView, source_id: Id) -> DataSourceLedger:
        """Is this data source in the released model? The answer (yes / no / unknown), every version's
        holding of it from the registry's lineage, the versions that unlearned it with their reports, the
        released versions that still hold it, its node's contributions, and the audit entries behind each
        step with inclusion proofs against one signed checkpoint (verify them as `commons audit prove` does)."""
        return ledger.data_source_ledger(ctx, source_id)

    @get("/models/{version:str}/contribution", sync_to_thread=True)
    def model_contribution(self, ctx: Ctx, actor: ActorView, version: VersionRef) -> ModelContribution:
        """Each node's contribution to the training job that produced this version (GTG-Shapley), per round,
        with the method's cost; 404 for a version no training job measured."""
        return ledger.contribution_of(ctx, version)

    @get("/contributions", sync_to_thread=True)
    def contributions(self, ctx: Ctx, model_version: VersionRef | None = None) -> list[ContributionRow]:
        """Open data: every node's contribution to every training job in the registry (or one version's),
        one row per version and node; public, like the audit log."""
        return ledger.contribution_rows(ctx, model_version)

    @get("/contributions.csv", sync_to_thread=True, media_type="text/csv")
    def contributions_csv(self, ctx: Ctx, model_version: VersionRef | None = None) -> Response[str]:
        """The same rows as CSV (RFC 4180, a header row; the columns of docs/ledger.md)."""
        return Response(
            ledger.contribution_csv(ctx, model_version),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="contributions.csv"'},
        )
