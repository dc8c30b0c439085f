"""Monte-Carlo tree search as a receding-horizon planner.

Each simulation (Kocsis & Szepesvari 2006, "Bandit based Monte-Carlo planning"; Browne et al.
2012, "A survey of Monte Carlo tree search methods"):

    node = root
    repeat until a new node is reached or the horizon H is:
        select an action at node: UCT, or PUCT with a prior (Silver et al. 2017); with
            progressive widening, first add a new action while the node has fewer than
            k * N(node)^alpha of them (Coulom 2007; Chaslot et al. 2008)
        sample the transition: a new outcome (one model step) while the action has fewer than
            k_s * N(action)^alpha_s of them, else an existing one in proportion to its count
            (double progressive widening, Couetoux et al. 2011; alpha_s = 0 and k_s = 1, the
            default, keep one outcome per action: deterministic models)
    evaluate the new node: the mean return of a batch of rollouts (random, or by a policy) to
        the horizon, plus a value function at their ends if one is given, or the value
        function alone
    back the return up the path: every edge's mean return and visit count; a path whose
        last step diverged (NaN or infinite reward or value) marks that action diverged, and
        nothing above it learns from the simulation

Returns are undiscounted sums over the horizon, as the sampling planners'. Q values are
normalised to [0, 1] by the smallest and largest mean seen in the tree (as in MuZero), so one
exploration constant serves any reward scale. A diverged action is never selected again and
does not count against progressive widening, so the search goes around the region where the
model diverges; a leaf's value is the mean of its finite rollouts. If no action at the root
has a finite return, `plan` raises `ModelDivergedError`. The action played is the root's most
visited; the plan is the most visited path, padded with its last action. With
`reuse_subtree`, the next call starts from the outcome of the played action whose state matches
the new state, keeping its statistics.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from controllers.protocols import Dynamics, ModelDivergedError, Plan, sequence_returns
from controllers.validation import (
    check_types,
    checked_bounds,
    checked_state,
    checked_warm_start,
    require,
    require_positive,
)

#: `prior(state [dx], actions [A, du]) -> [A]` probabilities over the candidate actions.
PriorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: `policy(states [B, dx]) -> [B, du]`, actions for rollouts.
PolicyFn = Callable[[torch.Tensor], torch.Tensor]
#: `value(states [B, dx]) -> [B]`, estimated returns from the states.
ValueFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MCTSConfig:
    """Settings of `MCTS`."""

    #: Planning horizon H: tree depth plus rollout length, in control steps.
    horizon: int = 25
    #: Simulations per call at most (a deadline or `time_budget_ms` may stop it earlier).
    simulations: int = 200
    #: Wall-clock budget of one call in milliseconds (None: only `simulations` bounds it).
    time_budget_ms: float | None = None
    #: Exploration constant c of UCT (`q + c sqrt(ln N / n)`) or PUCT
    #: (`q + c p sqrt(N) / (1 + n)`), on Q normalised to [0, 1].
    exploration: float = 1.0
    #: Points per action dimension of a fixed grid (None: continuous actions with progressive
    #: widening, unless `MCTS` is given a discrete action set).
    grid_points: int | None = None
    #: Progressive widening of actions: at most ceil(k N^alpha) children at a node visited N
    #: times (continuous actions only).
    widening_k: float = 1.0
    #: Its exponent alpha, in (0, 1).
    widening_alpha: float = 0.5
    #: Double progressive widening of outcomes: at most ceil(k_s n^alpha_s) sampled next
    #: states per action taken n times (1 and 0: one outcome, for deterministic models).
    outcome_widening_k: float = 1.0
    #: Its exponent alpha_s, in [0, 1).
    outcome_widening_alpha: float = 0.0
    #: Rollouts per evaluated node, run as one batch.
    rollouts_per_leaf: int = 4
    #: Rollout length at most (the rest of the horizon if shorter); 0 with a value function:
    #: the value function alone evaluates.
    rollout_horizon: int = 25
    #: Start the next call from the matching outcome of the played action, statistics kept.
    reuse_subtree: bool = True
    #: Largest absolute difference between the new state and an outcome's state for reuse.
    reuse_tolerance: float = 1e-6

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "horizon", "simulations", "rollouts_per_leaf")
        require(self, "time_budget_ms", self.time_budget_ms is None or self.time_budget_ms > 0,
                "must be > 0 or null")
        for name in ("exploration", "rollout_horizon", "reuse_tolerance"):
            require(self, name, getattr(self, name) >= 0, "must be >= 0")
        require(self, "grid_points", self.grid_points is None or self.grid_points >= 2,
                "must be >= 2 or null")
        require(self, "widening_k", self.widening_k > 0, "must be > 0")
        require(self, "widening_alpha", 0 < self.widening_alpha < 1, "must be in (0, 1)")
        require(self, "outcome_widening_k", self.outcome_widening_k >= 1, "must be >= 1")
        require(self, "outcome_widening_alpha", 0 <= self.outcome_widening_alpha < 1,
                "must be in [0, 1)")


@dataclass
class Outcome:
    """A sampled next state of an action at a node."""

    #: The node of the next state.
    node: Node
    #: The step's reward.
    reward: float
    #: Times this outcome was sampled.
    count: int = 1


@dataclass
class Edge:
    """An action tried at a node, with its statistics."""

    #: The action `[du]`.
    action: torch.Tensor
    #: Its prior probability (1 without a prior).
    prior: float
    #: Simulations through it.
    visits: int = 0
    #: Sum of their returns from the node.
    return_sum: float = 0.0
    #: Its sampled next states.
    outcomes: list[Outcome] = field(default_factory=list)
    #: A step or evaluation through it gave NaN or infinity: it ranks last, never tried again.
    diverged: bool = False

    @property
    def mean_return(self) -> float:
        return self.return_sum / self.visits if self.visits else 0.0


@dataclass
class Node:
    """A state in the tree."""

    #: The state `[dx]`.
    state: torch.Tensor
    #: Simulations through it.
    visits: int = 0
    #: Its actions so far (a discrete set's all at once, in a random order).
    edges: list[Edge] = field(default_factory=list)


class MCTS:
    """Monte-Carlo tree search (see the module docstring) as a `Planner`.

    Args:
        dynamics: batched `step` and `reward` (the true simulator through `get_state` /
            `set_state` vectors, a learned model, an analytic one); a stochastic `step` samples.
        action_low, action_high: bounds `[du]`.
        config: see `MCTSConfig`.
        actions: a discrete action set `[A, du]` (None: a grid, or continuous actions).
        prior: action probabilities for PUCT (None: UCT).
        rollout_policy: the rollouts' actions (None: uniform in the bounds or the set).
        value: estimated return at the rollouts' ends (None: zero).
        generator: the source of randomness; a fixed seed gives a fixed tree.
    """

    def __init__(
        self,
        dynamics: Dynamics,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: MCTSConfig = MCTSConfig(),
        actions: torch.Tensor | None = None,
        prior: PriorFn | None = None,
        rollout_policy: PolicyFn | None = None,
        value: ValueFn | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        action_low, action_high = checked_bounds(action_low, action_high, strict=False)
        if actions is None and config.grid_points is not None:
            actions = action_grid(action_low, action_high, config.grid_points)
        if actions is not None and (actions.ndim != 2 or actions.shape[1] != action_low.shape[0]
                                    or actions.shape[0] < 1):
            raise ValueError(f"actions must be [A >= 1, du={action_low.shape[0]}], got "
                             f"{list(actions.shape)}")
        if actions is not None and not bool(torch.isfinite(actions).all()):
            raise ValueError("actions must be finite")
        if prior is not None and actions is None:
            raise ValueError("a prior needs a discrete action set or a grid (grid_points)")
        if config.rollout_horizon == 0 and value is None:
            raise ValueError("rollout_horizon 0 needs a value function to evaluate leaves")
        self.dynamics = dynamics
        self.action_low, self.action_high = action_low, action_high
        self.config = config
        self.horizon = config.horizon
        self.actions = None if actions is None else torch.clamp(
            actions.to(torch.float64), self.action_low, self.action_high
        )
        self.prior, self.rollout_policy, self.value = prior, rollout_policy, value
        self.generator = generator if generator is not None else torch.Generator()
        self._root: Node | None = None
        self._played: Edge | None = None
        self._q_low, self._q_high = math.inf, -math.inf

    def reset(self) -> None:
        """Forget the tree: a new episode shares nothing with the last."""
        self._root, self._played = None, None

    @property
    def tree(self) -> Node | None:
        """The root of the last search's tree (None before the first or after `reset`), for
        inspection; the next search may continue from one of its subtrees."""
        return self._root

    @property
    def played(self) -> Edge | None:
        """The root action the last search chose, with its statistics and outcomes."""
        return self._played

    def plan(
        self, state: torch.Tensor, warm_start: torch.Tensor | None = None, *,
        deadline: float | None = None,
    ) -> Plan:
        """Search from `state` `[dx]`; the plan is the most visited path `[H, du]`.

        `warm_start` is checked but not used (the kept subtree is MCTS's warm start). The search
        stops after `config.simulations`, or before a simulation that, as long as the slowest
        so far, would end past the deadline (the earlier of `deadline` and
        `config.time_budget_ms`); at least one simulation runs.

        Raises:
            ModelDivergedError: if no action at the root has a finite mean return.
        """
        started = time.perf_counter()
        state = checked_state(state, dim=getattr(self.dynamics, "state_dim", None))
        if warm_start is not None:
            checked_warm_start(warm_start, (self.horizon, self.action_low.shape[0]))
        if self.config.time_budget_ms is not None:
            budget_end = started + self.config.time_budget_ms / 1000
            deadline = budget_end if deadline is None else min(deadline, budget_end)
        root = self._reused_root(state) or Node(state=state.to(torch.float64))
        reused = root.visits
        if reused == 0:
            self._q_low, self._q_high = math.inf, -math.inf
        simulations, slowest = 0, 0.0
        while simulations < self.config.simulations:
            if simulations and deadline is not None and time.perf_counter() + slowest > deadline:
                break
            began = time.perf_counter()
            self._simulate(root)
            simulations += 1
            slowest = max(slowest, time.perf_counter() - began)
        ranked = [e for e in root.edges if e.visits and not e.diverged]
        if not ranked:
            self.reset()
            raise ModelDivergedError(
                f"MCTS: every one of {simulations} simulations returned NaN or infinity; the "
                "dynamics diverge from this state, so no action can be ranked"
            )
        best = max(ranked, key=lambda e: (e.visits, e.mean_return))
        self._root, self._played = root, best
        return Plan(
            actions=self._principal_path(root),
            expected_return=best.mean_return,
            iterations=simulations,
            info={
                "simulations": simulations,
                "reused_visits": reused,
                "root_visits": root.visits,
                "root_actions": torch.stack([e.action for e in root.edges]),
                "root_action_visits": [e.visits for e in root.edges],
                "root_action_returns": [e.mean_return for e in root.edges],
            },
        )

    # ------------------------------------------------------------------ one simulation

    def _simulate(self, root: Node) -> None:
        path: list[tuple[Node, Edge, Outcome]] = []
        node, depth, is_new = root, 0, False
        while depth < self.horizon and not is_new:
            edge = self._select(node)
            outcome, is_new = self._transition(node, edge)
            path.append((node, edge, outcome))
            node, depth = outcome.node, depth + 1
            if not math.isfinite(outcome.reward):
                break
        _, last, last_outcome = path[-1]
        value = 0.0
        if math.isfinite(last_outcome.reward) and depth < self.horizon:
            value = self._evaluate(node.state, self.horizon - depth)
        root.visits += 1
        if not (math.isfinite(last_outcome.reward) and math.isfinite(value)):
            last.diverged, last.visits, last.return_sum = True, last.visits + 1, -math.inf
            return  # what led here learns nothing: its value beyond this step is unknown
        for _, edge, outcome in reversed(path):
            value = outcome.reward + value
            outcome.node.visits += 1
            edge.visits += 1
            edge.return_sum += value
            self._q_low = min(self._q_low, edge.mean_return)
            self._q_high = max(self._q_high, edge.mean_return)

    def _select(self, node: Node) -> Edge:
        """The action to take at `node`: with continuous actions a new one while widening
        allows (diverged ones not counted), else the best by UCT or PUCT (untried ones first
        under UCT); a diverged action only when every one has diverged."""
        if self.actions is not None:
            if not node.edges:  # first visit: every action, in a random order for ties
                priors = self._priors(node.state, self.actions)
                order = torch.randperm(self.actions.shape[0], generator=self.generator)
                node.edges = [Edge(self.actions[i], float(priors[i])) for i in order.tolist()]
        else:
            live = sum(not e.diverged for e in node.edges)
            if live < math.ceil(
                self.config.widening_k * max(node.visits, 1) ** self.config.widening_alpha
            ):
                low, high = self.action_low, self.action_high
                unit = torch.rand(low.shape, generator=self.generator, dtype=torch.float64)
                edge = Edge(action=low + (high - low) * unit, prior=1.0)
                node.edges.append(edge)
                return edge
        return max(node.edges, key=lambda e: -math.inf if e.diverged else self._score(node, e))

    def _score(self, node: Node, edge: Edge) -> float:
        c = self.config.exploration
        if self.prior is not None:  # PUCT; an untried action counts as the worst seen
            return self._normalised(edge) + c * edge.prior * math.sqrt(node.visits) / (
                1 + edge.visits
            )
        if edge.visits == 0:
            return math.inf
        return self._normalised(edge) + c * math.sqrt(math.log(max(node.visits, 1)) / edge.visits)

    def _normalised(self, edge: Edge) -> float:
        """The edge's mean return mapped to [0, 1] by the extremes seen in the tree (0 for an
        untried edge, 0.5 while all means are equal)."""
        if edge.visits == 0 or not math.isfinite(edge.mean_return):
            return 0.0
        spread = self._q_high - self._q_low
        return (edge.mean_return - self._q_low) / spread if spread > 0 else 0.5

    def _priors(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.prior is None:
            return torch.ones(actions.shape[0], dtype=torch.float64)
        p = self.prior(state, actions).to(torch.float64)
        if p.shape != (actions.shape[0],) or not bool(torch.isfinite(p).all() and (p >= 0).all()):
            raise ValueError(f"prior must give finite non-negative [{actions.shape[0]}], got {p}")
        return p / p.sum().clamp(min=1e-12)

    def _transition(self, node: Node, edge: Edge) -> tuple[Outcome, bool]:
        """A new sampled next state while outcome widening allows, else an existing one in
        proportion to its count."""
        allowed = math.ceil(
            self.config.outcome_widening_k * max(edge.visits, 1)
            ** self.config.outcome_widening_alpha
        )
        if len(edge.outcomes) < allowed:
            state, action = node.state[None], edge.action[None].to(node.state.dtype)
            with torch.no_grad():
                next_state = self.dynamics.step(state, action)
                reward = float(self.dynamics.reward(state, action, next_state)[0])
            if not math.isfinite(reward):  # a diverged step ranks last, never first
                reward = -math.inf
            outcome = Outcome(node=Node(state=next_state[0].to(torch.float64)), reward=reward)
            edge.outcomes.append(outcome)
            return outcome, True
        counts = torch.tensor([o.count for o in edge.outcomes], dtype=torch.float64)
        chosen = edge.outcomes[int(torch.multinomial(counts, 1, generator=self.generator))]
        chosen.count += 1
        return chosen, False

    def _evaluate(self, state: torch.Tensor, steps_left: int) -> float:
        """Mean return of a batch of rollouts from `state`, plus the value at their ends."""
        length = min(self.config.rollout_horizon, steps_left)
        n = self.config.rollouts_per_leaf
        with torch.no_grad():
            if length == 0:
                assert self.value is not None
                value = float(self.value(state[None])[0])
                return value if math.isfinite(value) else -math.inf
            if self.rollout_policy is None and self.value is None:
                actions = self._random_actions(n, length)
                returns = sequence_returns(self.dynamics, state, actions.to(state.dtype))
                return _finite_mean(returns)
            x = state.expand(n, -1)
            total = torch.zeros(n, dtype=torch.float64)
            for _ in range(length):
                if self.rollout_policy is not None:
                    u = torch.clamp(self.rollout_policy(x).to(torch.float64), self.action_low,
                                    self.action_high)
                else:
                    u = self._random_actions(n, 1)[:, 0]
                x_next = self.dynamics.step(x, u.to(x.dtype))
                total = total + self.dynamics.reward(x, u.to(x.dtype), x_next).to(torch.float64)
                x = x_next
            if self.value is not None:
                total = total + self.value(x).to(torch.float64)
            return _finite_mean(total)

    def _random_actions(self, n: int, length: int) -> torch.Tensor:
        """`[n, length, du]` uniform in the bounds, or uniform over the discrete set."""
        if self.actions is not None:
            index = torch.randint(self.actions.shape[0], (n, length), generator=self.generator)
            return self.actions[index]
        du = self.action_low.shape[0]
        unit = torch.rand((n, length, du), generator=self.generator, dtype=torch.float64)
        return self.action_low + (self.action_high - self.action_low) * unit

    # ------------------------------------------------------------------ between calls

    def _principal_path(self, root: Node) -> torch.Tensor:
        """The most visited actions from the root, padded with the last to `[H, du]`."""
        actions: list[torch.Tensor] = []
        node = root
        while len(actions) < self.horizon:
            edges = [e for e in node.edges if e.visits and not e.diverged]
            if not edges:
                break
            edge = max(edges, key=lambda e: (e.visits, e.mean_return))
            actions.append(edge.action)
            node = max(edge.outcomes, key=lambda o: o.count).node
        actions.extend([actions[-1]] * (self.horizon - len(actions)))
        return torch.stack(actions)

    def _reused_root(self, state: torch.Tensor) -> Node | None:
        """The played action's outcome at `state`, if subtree reuse is on and one matches."""
        if not self.config.reuse_subtree or self._played is None:
            return None
        target = state.to(torch.float64)
        for outcome in self._played.outcomes:
            same = outcome.node.state.shape == target.shape and bool(
                ((outcome.node.state - target).abs() <= self.config.reuse_tolerance).all()
            )
            if same:
                return outcome.node
        return None


def _finite_mean(returns: torch.Tensor) -> float:
    """The mean of the finite entries of `returns` `[n]` (rollouts that did not diverge), or
    -inf if none is finite."""
    finite = returns[torch.isfinite(returns)]
    return float(finite.mean()) if finite.numel() else -math.inf


def action_grid(low: torch.Tensor, high: torch.Tensor, points: int) -> torch.Tensor:
    """`points` evenly spaced values per dimension between the bounds `[du]`, every
    combination: `[points**du, du]`."""
    axes = [torch.linspace(float(a), float(b), points, dtype=torch.float64)
            for a, b in zip(low, high, strict=True)]
    return torch.tensor(list(itertools.product(*[a.tolist() for a in axes])),
                        dtype=torch.float64)
