"""What crosses the wire between the ServerApp and the ClientApps (message types and record keys).

Every instruction carries ``arrays`` (an ArrayRecord: the model's parameters) and ``config`` (a ConfigRecord:
task name, model config as JSON, seed, round, the target and the lineage's exclusions as JSON, local optimiser
settings as JSON). Some carry extra ArrayRecords: ``anchor`` + ``fisher`` (EWC), ``ball-center`` (the L2 ball),
``teacher`` (the model a repair distils from). Replies carry ``arrays`` (or ``fisher``) and one MetricRecord
``metrics`` whose ``num-examples`` weights the aggregation. No record ever holds examples, texts, labels or file contents: only parameters, Fisher diagonals,
counts, losses and accuracies (tests/integration/test_unlearning_wire.py checks every message).
Verification's messages (``query.probe``, ``query.score``, ``query.relearn``) carry models as
``model:<name>`` ArrayRecords and indices into a node's own examples; replies carry per-example scores
(``scores``: losses, Min-K% scores, exposures, extraction hits, one float tensor each), counts, and after
a relearning attack the attacked models' parameters (tests/integration/test_verification_nodes.py).

This is also the adapter between Flower's records and the rest of ``unlearning``, which sees parameters as
plain tensors (``dict[str, Tensor]``): :func:`to_record` and :func:`from_record` are the only conversions.
Each such record holds ONE array, ``packed``: the whole state dict in one buffer (names, dtypes and shapes in
its header; :mod:`unlearning.federation.packing`), not one Flower array per tensor, because a Deployment
Engine node fetches every array of a message with its own HTTP requests. :func:`weighted_mean` is FedAvg
over such state dicts (Flower's ``aggregate_arrayrecords``, computed the same way).

An instruction with two or more such records (an ascent's ``arrays``, ``anchor``, ``fisher`` and
``ball-center``; verification's models) travels with them in ONE record, ``bundle`` (:func:`bundle`: each
record's packed bytes as a uint8 entry of one packed buffer, stype :data:`BUNDLE_STYPE`): three objects on
the wire in place of three per model. The ClientApp puts the records back before any handler sees the
message (:func:`unbundle_mod`), so handlers read ``arrays``, ``anchor`` ... as before.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import (
    Grid as Grid,  # where a ServerApp sends its messages (any runtime's); for annotations
)
from torch import Tensor, nn

from unlearning.federation import packing

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
TEACHER = "teacher"  # the model a repair distils from (its outputs on the node's own batches)
SCORES = "scores"  # a verification reply's per-example scores (one tensor per model and score)
MODEL_PREFIX = "model:"  # a verification message's models by name ("model:candidate", ...)
PACKED = "packed"  # the one array of every ArrayRecord: a whole state dict (see packing.py)
BUNDLE = "bundle"  # an instruction's ArrayRecords, two or more, as one (see bundle())
BUNDLE_STYPE = "commons.bundle/1"


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
    """``tensors`` as an ArrayRecord of one packed array (one object on the wire, whatever their number)."""
    return _one_array(packing.pack(tensors), packing.STYPE)


def _packed_bytes(record: ArrayRecord, stype: str = packing.STYPE) -> bytes:
    if list(record.keys()) != [PACKED] or record[PACKED].stype != stype:
        raise packing.PackError(
            f"an ArrayRecord of arrays {sorted(record.keys())[:3]} is not one {stype!r} array "
            f"named {PACKED!r}: the sender runs another version of the protocol"
        )
    return record[PACKED].data


def _one_array(data: bytes, stype: str) -> ArrayRecord:
    return ArrayRecord({PACKED: Array(dtype="uint8", shape=(len(data),), stype=stype, data=data)})


def from_record(record: ArrayRecord) -> dict[str, Tensor]:
    """The tensors of a record made by :func:`to_record`, in their order; :class:`packing.PackError` for any
    other record (an array per tensor comes from a sender that does not speak this protocol)."""
    return packing.unpack(_packed_bytes(record))


def bundle(records: Mapping[str, Any]) -> dict[str, Any]:
    """``records`` (a message's content) with its ArrayRecords, when there are two or more, as ONE
    ArrayRecord ``bundle``: a packed buffer whose entries are each record's packed bytes (uint8, in their
    order). Flower sends every record, array and chunk as its own object, one request each at every hop;
    an ascent message with four models was 15 objects, bundled it is 6. Other records stay as they are."""
    arrays = [k for k, v in records.items() if isinstance(v, ArrayRecord)]
    if len(arrays) < 2:
        return dict(records)
    parts = {k: torch.frombuffer(bytearray(_packed_bytes(records[k])), dtype=torch.uint8) for k in arrays}
    out = {k: v for k, v in records.items() if not isinstance(v, ArrayRecord)}
    out[BUNDLE] = _one_array(packing.pack(parts), BUNDLE_STYPE)
    return out


def unbundle(content: RecordDict) -> None:
    """Put the ArrayRecords of ``content``'s ``bundle`` back in place (in their order); nothing to do
    without one. :class:`packing.PackError` for a bundle that :func:`bundle` did not make."""
    if BUNDLE not in content.array_records:
        return
    parts = packing.unpack(_packed_bytes(content.array_records[BUNDLE], BUNDLE_STYPE))
    for key, part in parts.items():
        if part.dtype != torch.uint8 or part.dim() != 1:
            raise packing.PackError(f"bundle entry {key!r} is not a byte string")
        if key in content:
            raise packing.PackError(f"record {key!r} is both in the bundle and beside it")
    del content[BUNDLE]
    for key, part in parts.items():
        content[key] = _one_array(part.numpy().tobytes(), packing.STYPE)


def unbundle_mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """A ClientApp mod: the handlers see an instruction's records as the ServerApp made them (:func:`unbundle`),
    in a copy of the message (the one received stays as it came)."""
    if msg.has_content() and BUNDLE in msg.content.array_records:
        content = RecordDict(dict(msg.content.items()))
        unbundle(content)
        msg = copy.copy(msg)
        msg.content = content
    return call_next(msg, context)


def weighted_mean(states: Sequence[tuple[Mapping[str, Tensor], float]]) -> dict[str, Tensor]:
    """The weighted mean of state dicts (FedAvg), computed as Flower's ``aggregate_arrayrecords`` does (in
    numpy, ``sum_i state_i * (w_i / sum w)`` in the order given; a key's dtype follows numpy's rules), so the
    result is the same on every runtime. bfloat16, which numpy lacks, is averaged in float32."""
    total = sum(w for _, w in states)
    sums: dict[str, np.ndarray] = {}
    bf16: set[str] = set()
    for tensors, w in states:
        factor = w / total
        for k, v in tensors.items():
            if v.dtype == torch.bfloat16:
                bf16.add(k)
                v = v.float()
            term = v.detach().cpu().numpy() * factor
            if k in sums:
                sums[k] += term
            else:
                sums[k] = term
    out = {k: torch.from_numpy(np.asarray(v)) for k, v in sums.items()}
    return {k: v.to(torch.bfloat16) if k in bf16 else v for k, v in out.items()}


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
