"""Chain schedules: which groups step when, on which model copies (devinterp_ui.schedules)."""

from types import SimpleNamespace

import pytest
import torch

from devinterp_ui.schedules import CHAIN_DONE, Round, rounds


def recorder():
    built = []

    def build(chains, model):
        group = SimpleNamespace(chains=chains, model=model)
        built.append(group)
        return group

    return built, build


def test_lockstep_steps_every_chain_once_per_round_on_its_own_copy():
    checkpoint = torch.nn.Linear(2, 1)
    built, build = recorder()
    items = list(rounds("lockstep", checkpoint, 3, 2, build, [True] * 3))
    assert [g.chains for g in built] == [[0], [1], [2]]
    assert len({id(g.model) for g in built} | {id(checkpoint)}) == 4  # private copies
    assert [(r.step, [g.chains for g in r.groups]) for r in items] == [
        (0, [[0], [1], [2]]),
        (1, [[0], [1], [2]]),
    ]


def test_lockstep_leaves_an_ended_chain_out_of_later_rounds():
    active = [True, True]
    _, build = recorder()
    items = rounds("lockstep", torch.nn.Linear(2, 1), 2, 3, build, active)
    first = next(items)
    assert len(first.groups) == 2
    active[0] = False
    assert [g.chains for g in next(items).groups] == [[1]]


def test_sequential_runs_chains_one_after_another_on_one_reused_copy():
    checkpoint = torch.nn.Linear(2, 1)
    built, build = recorder()
    active = [True, True]
    items = []
    for item in rounds("sequential", checkpoint, 2, 2, build, active):
        items.append(item if item is CHAIN_DONE else (item.step, item.groups[0].chains))
        if item is not CHAIN_DONE:  # a chain steps its copy away from the checkpoint
            with torch.no_grad():
                item.groups[0].model.weight.add_(1.0)
    assert items == [(0, [0]), (1, [0]), CHAIN_DONE, (0, [1]), (1, [1]), CHAIN_DONE]
    assert built[0].model is built[1].model is not checkpoint
    # each chain starts from the checkpoint: the second started after a reload
    torch.testing.assert_close(built[1].model.weight, checkpoint.weight + 2.0)


def test_sequential_skips_the_rest_of_a_failed_chain():
    active = [True, True]
    _, build = recorder()
    items = rounds("sequential", torch.nn.Linear(2, 1), 2, 5, build, active)
    assert next(items).step == 0
    active[0] = False
    assert next(items) is CHAIN_DONE
    assert next(items).groups[0].chains == [1]


def test_vectorized_builds_one_group_of_every_chain_from_the_checkpoint():
    checkpoint = torch.nn.Linear(2, 1)
    built, build = recorder()
    items = list(rounds("vectorized", checkpoint, 4, 3, build, [True] * 4))
    assert [g.chains for g in built] == [[0, 1, 2, 3]] and built[0].model is checkpoint
    assert [r.step for r in items] == [0, 1, 2]
    assert all(isinstance(r, Round) and len(r.groups) == 1 for r in items)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="chain_schedule must be one of"):
        list(rounds("parallel", torch.nn.Linear(2, 1), 1, 1, lambda c, m: None, [True]))


def test_with_a_state_the_checkpoint_is_the_last_lockstep_chains_copy():
    checkpoint = torch.nn.Linear(2, 1)
    built, build = recorder()
    list(rounds("lockstep", checkpoint, 3, 1, build, [True] * 3, checkpoint.state_dict()))
    assert built[2].model is checkpoint
    assert len({id(g.model) for g in built}) == 3  # the other two are private copies


def test_with_a_state_sequential_works_on_the_checkpoint_reloaded_from_the_state():
    checkpoint = torch.nn.Linear(2, 1)
    state = {k: v.clone() for k, v in checkpoint.state_dict().items()}
    built, build = recorder()
    for item in rounds("sequential", checkpoint, 2, 2, build, [True, True], state):
        if item is not CHAIN_DONE:
            with torch.no_grad():
                item.groups[0].model.weight.add_(1.0)
    assert built[0].model is built[1].model is checkpoint
    torch.testing.assert_close(checkpoint.weight, state["weight"] + 2.0)
