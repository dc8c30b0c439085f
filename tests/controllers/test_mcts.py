"""MCTS known answers: it finds the best arm of a bandit and the far-sighted path of a deceptive
chain, widens at the stated rate, builds the same tree from the same seed, honours a budget in
milliseconds and keeps the statistics of the subtree it reuses."""

from __future__ import annotations

import math
import time

import pytest
import torch

from controllers.mcts import MCTS, MCTSConfig, action_grid

F64 = torch.float64
LOW, HIGH = torch.tensor([-1.0], dtype=F64), torch.tensor([1.0], dtype=F64)


class Bandit:
    """One step; the reward depends on the action alone: 0.9 at a = 0, less elsewhere."""

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        return 0.9 - 0.8 * action[:, 0].abs()


class DeceptiveChain:
    """x' = x + a with a in {-1, +1}. Stepping left from 0 pays 0.3 at once; reaching x = 3
    pays 1. The greedy first step (left) is wrong at horizon 3."""

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state + action

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        bait = (state[:, 0] == 0) & (action[:, 0] < 0)
        goal = next_state[:, 0] == 3
        return 0.3 * bait.to(F64) + 1.0 * goal.to(F64)


class NoisyDrift:
    """x' = x + a + noise: a stochastic model whose outcomes must be sampled."""

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state + action + 0.1 * torch.randn(state.shape, generator=self.generator,
                                                  dtype=state.dtype)

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        return -next_state[:, 0].abs()


STEPS = torch.tensor([[-1.0], [1.0]], dtype=F64)


def test_it_finds_the_best_arm_of_a_bandit() -> None:
    planner = MCTS(Bandit(), LOW, HIGH, MCTSConfig(horizon=1, simulations=60, grid_points=5),
                   generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(1, dtype=F64))
    assert float(plan.actions[0, 0]) == 0.0
    assert plan.expected_return == pytest.approx(0.9)
    visits = plan.info["root_action_visits"]
    assert max(visits) == visits[plan.info["root_actions"][:, 0].tolist().index(0.0)]


def test_it_sees_past_the_bait_of_a_deceptive_chain() -> None:
    planner = MCTS(DeceptiveChain(), LOW, HIGH, MCTSConfig(horizon=3, simulations=200),
                   actions=STEPS, generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(1, dtype=F64))
    assert plan.actions[:3, 0].tolist() == [1.0, 1.0, 1.0]
    assert plan.expected_return > 0.8  # a mean over its visits, exploring ones among them


@pytest.mark.parametrize(("k", "alpha"), [(1.0, 0.5), (2.0, 0.5), (1.0, 0.3)])
@pytest.mark.parametrize("simulations", [1, 10, 80])
def test_progressive_widening_grows_children_as_k_n_to_the_alpha(
    k: float, alpha: float, simulations: int
) -> None:
    config = MCTSConfig(horizon=1, simulations=simulations, widening_k=k, widening_alpha=alpha)
    planner = MCTS(Bandit(), LOW, HIGH, config, generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(1, dtype=F64))
    # The n-th simulation meets the root visited n - 1 times and adds a child if it has
    # fewer than ceil(k max(n - 1, 1)^alpha): one at most per simulation.
    expected = min(simulations, math.ceil(k * max(simulations - 1, 1) ** alpha))
    assert len(plan.info["root_actions"]) == expected


def test_double_progressive_widening_samples_outcomes_at_the_stated_rate() -> None:
    config = MCTSConfig(horizon=1, simulations=50, outcome_widening_k=1.0,
                        outcome_widening_alpha=0.5)
    planner = MCTS(NoisyDrift(), LOW, HIGH, config, actions=STEPS,
                   generator=torch.Generator().manual_seed(0))
    planner.plan(torch.zeros(1, dtype=F64))
    assert planner.tree is not None
    for edge in planner.tree.edges:
        assert len(edge.outcomes) == math.ceil(max(edge.visits - 1, 1) ** 0.5)
        assert sum(o.count for o in edge.outcomes) == edge.visits


def test_the_same_seed_builds_the_same_tree_and_another_seed_another() -> None:
    def search(seed: int) -> tuple[list[int], list[list[float]]]:
        planner = MCTS(DeceptiveChain(), LOW, HIGH,
                       MCTSConfig(horizon=6, simulations=60, widening_alpha=0.6),
                       generator=torch.Generator().manual_seed(seed))
        plan = planner.plan(torch.zeros(1, dtype=F64))
        return plan.info["root_action_visits"], plan.info["root_actions"].tolist()

    assert search(3) == search(3)
    assert search(3) != search(4)


def test_a_budget_in_milliseconds_is_honoured() -> None:
    class Slow(DeceptiveChain):
        def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            time.sleep(0.0005)
            return super().step(state, action)

    planner = MCTS(Slow(), LOW, HIGH,
                   MCTSConfig(horizon=5, simulations=10**6, time_budget_ms=40.0,
                              rollouts_per_leaf=1, rollout_horizon=2),
                   actions=STEPS, generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    plan = planner.plan(torch.zeros(1, dtype=F64))
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert plan.info["simulations"] > 1
    assert elapsed_ms < 40.0 + 15.0  # stops before a simulation that would end late


def test_the_reused_subtree_keeps_its_statistics() -> None:
    planner = MCTS(DeceptiveChain(), LOW, HIGH, MCTSConfig(horizon=3, simulations=100),
                   actions=STEPS, generator=torch.Generator().manual_seed(0))
    first = planner.plan(torch.zeros(1, dtype=F64))
    assert planner.played is not None
    kept = planner.played.outcomes[0].node.visits
    assert kept > 0
    second = planner.plan(torch.ones(1, dtype=F64))  # where the played action (+1) leads
    assert second.info["reused_visits"] == kept
    assert second.info["root_visits"] == kept + second.info["simulations"]
    assert first.info["reused_visits"] == 0
    elsewhere = planner.plan(torch.full((1,), 7.0, dtype=F64))  # no outcome there: a new tree
    assert elsewhere.info["reused_visits"] == 0
    planner.reset()
    assert planner.plan(torch.ones(1, dtype=F64)).info["reused_visits"] == 0


def test_puct_follows_the_prior_where_returns_tie() -> None:
    class Flat(Bandit):
        def reward(self, state: torch.Tensor, action: torch.Tensor,
                   next_state: torch.Tensor) -> torch.Tensor:
            return torch.zeros(state.shape[0], dtype=F64)

    actions = action_grid(LOW, HIGH, 4)
    planner = MCTS(Flat(), LOW, HIGH, MCTSConfig(horizon=1, simulations=30), actions=actions,
                   prior=lambda s, a: torch.tensor([0.1, 0.1, 0.7, 0.1], dtype=F64),
                   generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(1, dtype=F64))
    visits = dict(zip(plan.info["root_actions"][:, 0].tolist(), plan.info["root_action_visits"],
                      strict=True))
    assert max(visits, key=visits.__getitem__) == pytest.approx(float(actions[2, 0]))


def test_a_value_function_alone_can_evaluate_leaves() -> None:
    """No rewards at all; the value function says the right is better: MCTS goes right."""

    class Empty(DeceptiveChain):
        def reward(self, state: torch.Tensor, action: torch.Tensor,
                   next_state: torch.Tensor) -> torch.Tensor:
            return torch.zeros(state.shape[0], dtype=F64)

    planner = MCTS(Empty(), LOW, HIGH, MCTSConfig(horizon=2, simulations=20, rollout_horizon=0),
                   actions=STEPS, value=lambda x: x[:, 0],
                   generator=torch.Generator().manual_seed(0))
    assert float(planner.plan(torch.zeros(1, dtype=F64)).actions[0, 0]) == 1.0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="prior needs a discrete action set"):
        MCTS(Bandit(), LOW, HIGH, prior=lambda s, a: torch.ones(a.shape[0]))
    with pytest.raises(ValueError, match="needs a value function"):
        MCTS(Bandit(), LOW, HIGH, MCTSConfig(rollout_horizon=0))
    with pytest.raises(ValueError, match=r"actions must be \[A >= 1, du=1\]"):
        MCTS(Bandit(), LOW, HIGH, actions=torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="widening"):
        MCTSConfig(widening_alpha=1.5)
    with pytest.raises(ValueError, match="time_budget_ms"):
        MCTSConfig(time_budget_ms=0.0)


def test_policy_rollouts_evaluate_new_nodes() -> None:
    """One simulation per root action; rollouts that always step right find the goal behind
    the right step (return 1) and not behind the bait (0.3): the right step wins at once."""
    planner = MCTS(DeceptiveChain(), LOW, HIGH,
                   MCTSConfig(horizon=3, simulations=2, rollouts_per_leaf=1),
                   actions=STEPS, rollout_policy=lambda x: torch.ones(x.shape[0], 1, dtype=F64),
                   generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(1, dtype=F64))
    returns = dict(zip(plan.info["root_actions"][:, 0].tolist(),
                       plan.info["root_action_returns"], strict=True))
    assert returns == {1.0: pytest.approx(1.0), -1.0: pytest.approx(0.3)}
    assert float(plan.actions[0, 0]) == 1.0
