"""What crosses the wire between the ServerApp and the ClientApps (message types and record keys).

Every instruction carries ``arrays`` (an ArrayRecord: the model's parameters) and ``config`` (a ConfigRecord:
task name, model config as JSON, seed, round, the target and the lineage's exclusions as JSON, local optimiser
settings as JSON). Some carry extra ArrayRecords: ``anchor`` + ``fisher`` (EWC), ``ball-center`` (the L2 ball).
Replies carry ``arrays`` (or ``fisher``) and one MetricRecord ``metrics`` whose ``num-examples`` weights the
aggregation. No record ever holds examples, texts, labels or file contents: only parameters, Fisher diagonals,
counts, losses and accuracies (tests/integration/test_unlearning_wire.py checks every message).
Verification's messages (``query.probe``, ``query.score``, ``query.relearn``) carry models as
``model:<name>`` ArrayRecords and indices into a node's own examples; replies carry per-example scores
(``scores``: losses, Min-K% scores, exposures, extraction hits, one float tensor each), counts, and after
a relearning attack the attacked models' parameters (tests/integration/test_verification_nodes.py).

This is also the adapter between Flower's records and the rest of ``unlearning``, which sees parameters as
plain tensors (``dict[str, Tensor]``): :func:`to_record` and :func:`from_record` are the only conversions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import (
    Grid as Grid,  # where a ServerApp sends its messages (any runtime's); for annotations
)
from torch import Tensor, nn

# message types (<category>.<action>, Flower's Message API)
INFO = "query.info"
FISHER = "query.fisher"
TRAIN = "train"
UNLEARN = "train.unlearn"
EVALUATE = "evaluate"
# verification: per-example work on the nodes that hold the data (see node.probe / score / relearn)
PROBE = "query.probe"
SCORE = "query.score"
RELEARN = "query.relearn"
# contribution: each ``model:<name>`` of the message evaluated on the node's validation data (node.utility)
UTILITY = "query.utility"
# community evaluation: per-group validation figures of each model (unlearning.evaluation.node_groups)
GROUPS = "query.groups"

ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
ANCHOR, FISHER_ARRAYS, BALL_CENTER = "anchor", "fisher", "ball-center"
SCORES = "scores"  # a verification reply's per-example scores (one tensor per model and score)
MODEL_PREFIX = "model:"  # a verification message's models by name ("model:candidate", ...)


def arrays_of(message: Message, key: str = ARRAYS) -> ArrayRecord:
    return message.content.array_records[key]


def config_of(message: Message) -> ConfigRecord:
    return message.content.config_records[CONFIG]


def models_of(message: Message) -> dict[str, dict[str, Tensor]]:
    """A verification message's models by name (its ``model:<name>`` ArrayRecords) as tensors."""
    return {
        k[len(MODEL_PREFIX) :]: from_record(v)
        for k, v in message.content.array_records.items()
        if k.startswith(MODEL_PREFIX)
    }


def metrics_of(message: Message) -> dict[str, float]:
    return {k: float(v) for k, v in message.content.metric_records[METRICS].items()}  # type: ignore[arg-type]


def metric_record(metrics: Mapping[str, float]) -> MetricRecord:
    return MetricRecord({k: float(v) for k, v in metrics.items()})


def to_record(tensors: Mapping[str, Tensor]) -> ArrayRecord:
    return ArrayRecord({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def from_record(record: ArrayRecord) -> dict[str, Tensor]:
    return dict(record.to_torch_state_dict())


@torch.no_grad()
def load_record(model: nn.Module, record: ArrayRecord | Mapping[str, Tensor]) -> nn.Module:
    tensors = from_record(record) if isinstance(record, ArrayRecord) else dict(record)
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise ValueError(f"arrays are missing {len(missing)} parameter(s), e.g. {missing[0]}")
    for name, p in params.items():
        p.copy_(tensors[name].to(p.dtype).reshape(p.shape))
    return model


def library_versions() -> dict[str, str]:
    """The federation library's version, for the provenance of model versions and reports."""
    import flwr

    return {"flwr": flwr.__version__ if hasattr(flwr, "__version__") else "unknown"}


def content_size(message: Message) -> int:
    """Serialised size of a message's content, exactly as Flower puts it on the wire."""
    from flwr.common.serde import recorddict_to_proto

    if not message.has_content():
        return 0
    return int(recorddict_to_proto(message.content).ByteSize())
