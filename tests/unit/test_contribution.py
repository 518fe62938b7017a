"""GTG-Shapley on games whose Shapley values are known (unlearning.contribution.gtg_round), and the contribution
settings' validation."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
import torch

from unlearning.contract import ContractError, ContributionSettings, parse_contribution_settings
from unlearning.contribution import Subset, fedavg_of, gtg_round


def batch(f: Callable[[Subset], float], calls: list[int]) -> Callable[[Sequence[Subset]], list[float]]:
    def utility(subsets: Sequence[Subset]) -> list[float]:
        calls.append(len(subsets))
        return [f(s) for s in subsets]

    return utility


def test_an_additive_game_gives_each_player_its_own_worth() -> None:
    worth = {0: 0.3, 1: 0.1, 2: -0.05, 3: 0.2}
    calls: list[int] = []
    r = gtg_round(
        list(worth),
        batch(lambda s: sum(worth[i] for i in s), calls),
        ContributionSettings(),
        random.Random(0),
    )
    assert r.values == pytest.approx(worth)
    assert sum(r.values.values()) == pytest.approx(r.u_full - r.u_empty)
    assert r.evaluations == sum(calls) and not r.truncated


def test_a_weighted_voting_game_matches_its_shapley_values() -> None:
    # weights 50, 49, 1 with quota 51: player 0 is pivotal in 4 of 6 orders, the others in 1 each
    w = {0: 50, 1: 49, 2: 1}
    settings = ContributionSettings(max_permutations=600, tolerance=1e-6)
    r = gtg_round(
        [0, 1, 2], batch(lambda s: float(sum(w[i] for i in s) >= 51), []), settings, random.Random(1)
    )
    assert r.values == pytest.approx({0: 2 / 3, 1: 1 / 6, 2: 1 / 6})  # 3! orders, drawn without replacement
    assert r.permutations == 6 and r.evaluations == 2**3  # every subset once


def test_symmetric_players_score_alike_and_a_harmful_one_below_zero() -> None:
    # players 1 and 2 are copies; 3 spoils every coalition it joins
    def u(s: Subset) -> float:
        return 0.4 * (0 in s) + 0.3 * bool({1, 2} & s) + 0.05 * ({1, 2} <= s) - 0.2 * (3 in s)

    r = gtg_round(
        [0, 1, 2, 3],
        batch(u, []),
        ContributionSettings(max_permutations=24, tolerance=1e-9),
        random.Random(2),
    )
    assert r.values[1] == pytest.approx(r.values[2])
    assert r.values[3] == pytest.approx(-0.2, abs=1e-9)
    assert r.values[0] == pytest.approx(0.4, abs=1e-9)


def test_between_round_truncation_skips_a_flat_round() -> None:
    calls: list[int] = []
    r = gtg_round(
        [0, 1, 2], batch(lambda s: 0.5 + 1e-4 * len(s), calls), ContributionSettings(), random.Random(0)
    )
    assert r.truncated and set(r.values.values()) == {0.0}
    assert sum(calls) == 2  # U(∅) and U(N) only


def test_within_round_truncation_keeps_efficiency_within_epsilon() -> None:
    eps = 0.05

    # most of the improvement comes with the first player; later ones add less than eps together
    def u(s: Subset) -> float:
        return (1.0 if s else 0.0) + 0.01 * len(s)

    calls: list[int] = []
    settings = ContributionSettings(within_epsilon=eps)
    r = gtg_round([0, 1, 2, 3], batch(u, calls), settings, random.Random(0))
    assert abs(sum(r.values.values()) - (r.u_full - r.u_empty)) <= eps
    assert r.evaluations < 2**4  # truncation saved evaluations


def test_known_utilities_are_not_evaluated_again() -> None:
    calls: list[int] = []
    r = gtg_round(
        [0, 1],
        batch(lambda s: float(len(s)), calls),
        ContributionSettings(),
        random.Random(0),
        known={frozenset(): 0.0, frozenset({0, 1}): 2.0},
    )
    assert r.values == pytest.approx({0: 1.0, 1: 1.0})
    assert sum(calls) == 2  # {0} and {1}


def test_fedavg_of_a_subset_weighs_by_examples() -> None:
    updates = {
        0: ({"w": torch.tensor([1.0])}, 1.0),
        1: ({"w": torch.tensor([4.0])}, 3.0),
        2: ({"w": torch.tensor([9.0])}, 5.0),
    }
    assert float(fedavg_of(updates, frozenset({0, 1}))["w"]) == pytest.approx(3.25)
    assert float(fedavg_of(updates, frozenset({2}))["w"]) == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "banzhaf"}, "expected one of"),
        ({"rounds": 3}, "unknown contribution setting"),
        ({"within_epsilon": -1}, ">= 0"),
        ({"max_permutations": 1.5}, "must be int"),
        ({"utility": "f1"}, "expected one of"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message) as info:
        parse_contribution_settings(settings)
    assert info.value.field == "contribution"


def test_a_job_spec_with_bad_contribution_settings_is_refused_before_any_work() -> None:
    from unlearning.jobs import JobSpec, JobSpecError

    spec = JobSpec(
        kind="train",
        job_id="j",
        artifact_root="/nonexistent",
        dataset_dir="/nonexistent",
        base_version="mv-0",
        contribution={"method": "gtg-shapley", "max_permutations": -1},
    )
    with pytest.raises(JobSpecError, match="max_permutations"):
        spec.validate()
    assert JobSpec.from_json(spec.to_json()).contribution == spec.contribution  # travels as run config
