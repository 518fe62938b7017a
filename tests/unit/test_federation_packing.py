"""The wire format of models: one packed array per state dict (unlearning.federation.packing, protocol's
to_record / from_record / weighted_mean). Round trips keep every dtype, shape, byte and the order; Flower's
own serialisation carries a packed record as one array; bad bytes are refused with a clear error."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from unlearning.federation import packing
from unlearning.federation import protocol as P


def _every_dtype() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for name, dtype in packing.DTYPES.items():
        if dtype.is_floating_point or dtype.is_complex:
            t = torch.randn(3, 5, generator=g, dtype=torch.float64).to(dtype)
            if dtype.is_complex:
                t = t + 1j * t.flip(0)
        elif dtype == torch.bool:
            t = torch.rand(4, 3, generator=g) > 0.5
        else:
            t = torch.randint(0, 100, (2, 7), generator=g, dtype=torch.int64).to(dtype)
        out[f"layer.{name}"] = t
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        ua = a[k].contiguous().reshape(-1).view(torch.uint8)
        ub = b[k].contiguous().reshape(-1).view(torch.uint8)
        assert torch.equal(ua, ub), f"{k}: bytes differ"


def test_every_dtype_round_trips_bit_for_bit() -> None:
    state = _every_dtype()
    state["special"] = torch.tensor([float("nan"), -0.0, float("inf"), -float("inf"), 1e-45])
    back = packing.unpack(packing.pack(state))
    _same(state, back)
    assert {str(t.dtype) for t in back.values()} >= {"torch.bfloat16", "torch.int64", "torch.bool"}


def test_shapes_order_and_odd_tensors() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "z.last-first": torch.tensor(3.5),  # 0-d
        "a.empty": torch.zeros(0, 7),
        "m.transposed": base.t(),  # not contiguous
        "b.sliced": base[1:3, ::2],
        "c.byte": torch.tensor([1, 2, 3], dtype=torch.uint8),  # odd size: the next one is aligned
        "d.after": torch.ones(2, 2, dtype=torch.float64),
    }
    back = packing.unpack(packing.pack(state))
    assert list(back) == list(state), "the state dict's order is kept"
    _same({k: v.contiguous() for k, v in state.items()}, back)
    assert back["z.last-first"].shape == () and back["a.empty"].shape == (0, 7)
    assert all(t.is_contiguous() for t in back.values())


def test_empty_state() -> None:
    assert packing.unpack(packing.pack({})) == {}
    record = P.to_record({})
    assert list(record) == [P.PACKED] and P.from_record(record) == {}


def test_unpacked_tensors_own_their_memory() -> None:
    state = {"w": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3)}
    back = packing.unpack(packing.pack(state))
    back["w"] += 1  # writable, and no tensor shares a buffer with another
    assert back["b"].untyped_storage().nbytes() == 3 * 4
    assert back["w"].untyped_storage().data_ptr() != back["b"].untyped_storage().data_ptr()


def test_a_record_is_one_array_on_the_wire() -> None:
    state = {f"layer{i}.weight": torch.randn(8, 8) for i in range(40)}
    record = P.to_record(state)
    assert list(record) == [P.PACKED]
    assert record[P.PACKED].stype == packing.STYPE
    content = RecordDict({P.ARRAYS: record, P.METRICS: MetricRecord({"n": 1.0})})
    # Flower's objects of a message's content: the record dict, its records, ONE array and its chunk
    assert sum(type(o).__name__ == "Array" for o in _objects(content)) == 1
    through = recorddict_from_proto(recorddict_to_proto(content))  # what a LocalGrid / the wire does
    _same(state, P.from_record(through.array_records[P.ARRAYS]))
    # the per-tensor form Flower would use costs an array (and a chunk) per tensor, and more bytes
    plain = RecordDict({P.ARRAYS: ArrayRecord({k: v for k, v in state.items()})})
    assert (
        recorddict_to_proto(RecordDict({P.ARRAYS: record})).ByteSize() < recorddict_to_proto(plain).ByteSize()
    )


def _objects(root: object) -> list[object]:
    seen: list[object] = []

    def walk(o: object) -> None:
        seen.append(o)
        for child in (getattr(o, "children", None) or {}).values():
            walk(child)

    walk(root)
    return seen


def test_from_record_refuses_other_records() -> None:
    with pytest.raises(packing.PackError, match="another version of the protocol"):
        P.from_record(ArrayRecord({"w": torch.ones(2)}))


def _packed_with(header: object, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    head = packing.MAGIC + struct.pack("<Q", len(raw)) + raw
    pad = (-len(head)) % packing.ALIGN
    return head + bytes(pad) + payload


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "wrong magic"),
        (b"NOTPACKED" + bytes(20), "wrong magic"),
        (packing.MAGIC + struct.pack("<Q", 10**6) + b"{}", "cut off"),
        (packing.MAGIC + struct.pack("<Q", 3) + b"{x}", "not JSON"),
        (_packed_with({"arrays": []}), "no tensor list"),
        (_packed_with({"tensors": [["w", "float32", [2]]]}), r"\[name, dtype, shape, offset, nbytes\]"),
        (_packed_with({"tensors": [["w", "object", [2], 0, 8]]}, bytes(8)), "unknown dtype"),
        (_packed_with({"tensors": [["w", "float32", [-2], 0, 8]]}, bytes(8)), "bad shape"),
        (_packed_with({"tensors": [["w", "float32", [2], 3, 8]]}, bytes(16)), "bad offset"),
        (_packed_with({"tensors": [["w", "float32", [3], 0, 8]]}, bytes(16)), "do not hold"),
        (_packed_with({"tensors": [["w", "float32", [4], 0, 16]]}, bytes(8)), "outside"),
        (
            _packed_with({"tensors": [["w", "int8", [1], 0, 1], ["w", "int8", [1], 64, 1]]}, bytes(65)),
            "twice",
        ),
    ],
)
def test_bad_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(packing.PackError, match=message):
        packing.unpack(data)


def test_unpackable_values_are_refused() -> None:
    with pytest.raises(packing.PackError, match="not a tensor"):
        packing.pack({"w": np.ones(2)})  # type: ignore[dict-item]
    with pytest.raises(packing.PackError, match="cannot be packed"):
        packing.pack({"w": torch.ones(2, dtype=torch.uint16)})


def test_weighted_mean_is_flowers_fedavg_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(1)
    states = [
        (
            {
                "w": torch.randn(5, 3, generator=g),
                "b": torch.randn(3, generator=g).double(),
                "n": torch.tensor(7),
            },
            w,
        )
        for w in (120.0, 33.0, 7.0)
    ]
    ours = P.weighted_mean(states)
    contents = [
        RecordDict({"a": ArrayRecord(dict(s)), "m": MetricRecord({"num-examples": w})}) for s, w in states
    ]
    flowers = aggregate_arrayrecords(contents, "num-examples").to_torch_state_dict()
    _same(dict(flowers), ours)
    half = P.weighted_mean(
        [
            ({"x": torch.ones(2, dtype=torch.bfloat16)}, 1.0),
            ({"x": torch.zeros(2, dtype=torch.bfloat16)}, 1.0),
        ]
    )
    assert half["x"].dtype == torch.bfloat16 and half["x"].tolist() == [0.5, 0.5]


def _models() -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return {
        P.ARRAYS: {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)},
        P.ANCHOR: {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)},
        P.FISHER_ARRAYS: {"w": torch.rand(4, 3, generator=g).to(torch.bfloat16)},
    }


def test_an_instructions_models_travel_in_one_record_and_come_back_as_they_were() -> None:
    from flwr.app import ConfigRecord, Context, Message

    from unlearning.federation.local_grid import claim_task_identity

    claim_task_identity()  # Flower stamps a new message with the process's run id
    models = _models()
    records = {P.CONFIG: ConfigRecord({"round": 3}), **{k: P.to_record(v) for k, v in models.items()}}
    bundled = P.bundle(records)
    assert sorted(bundled) == [P.BUNDLE, P.CONFIG]
    content = RecordDict(bundled)
    # Flower's objects on the wire: one ArrayRecord of one array, whatever the number of models
    assert sum(type(o).__name__ == "ArrayRecord" for o in _objects(content)) == 1
    assert sum(type(o).__name__ == "Array" for o in _objects(content)) == 1
    unbundled = RecordDict(records)
    assert sum(type(o).__name__ == "Array" for o in _objects(unbundled)) == 3
    received = recorddict_from_proto(recorddict_to_proto(content))

    seen: list[RecordDict] = []
    msg = Message(received, dst_node_id=1, message_type="train.unlearn")  # a node's copy
    P.unbundle_mod(msg, Context(1, 1, {}, RecordDict(), {}), lambda m, c: seen.append(m.content) or m)
    assert list(msg.content.array_records) == [P.BUNDLE]  # the message as received is left as it came
    handler_sees = seen[0]
    assert list(handler_sees.array_records) == [P.ARRAYS, P.ANCHOR, P.FISHER_ARRAYS]  # in their order
    assert handler_sees[P.CONFIG]["round"] == 3
    for key, tensors in models.items():
        got = P.from_record(handler_sees.array_records[key])
        assert list(got) == list(tensors)
        for name, t in tensors.items():
            assert got[name].dtype == t.dtype and torch.equal(got[name], t)


def test_one_model_is_not_bundled_and_a_message_without_a_bundle_passes_unchanged() -> None:
    records = {P.ARRAYS: P.to_record(_models()[P.ARRAYS])}
    assert P.bundle(records) == records
    content = RecordDict(records)
    P.unbundle(content)
    assert list(content.array_records) == [P.ARRAYS]


def test_a_bundle_that_bundle_did_not_make_is_refused() -> None:
    models = _models()
    forged = RecordDict({P.BUNDLE: P.to_record(models[P.ARRAYS])})  # a state dict, not a bundle
    with pytest.raises(packing.PackError, match=r"not one 'commons\.bundle/1' array"):
        P.unbundle(forged)
    bundled = P.bundle({k: P.to_record(v) for k, v in models.items()})
    twice = RecordDict({**bundled, P.ANCHOR: P.to_record(models[P.ANCHOR])})  # also beside the bundle
    with pytest.raises(packing.PackError, match="both in the bundle and beside it"):
        P.unbundle(twice)
    not_bytes = RecordDict({P.BUNDLE: P._one_array(packing.pack({P.ARRAYS: torch.zeros(3)}), P.BUNDLE_STYPE)})
    with pytest.raises(packing.PackError, match="not a byte string"):
        P.unbundle(not_bytes)
