"""Loading, saving and validating instances (the book's *Formats* page and chapter *The model*): every rule, with the culprit named."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from ttamer import Instance, InstanceError, load_instance, save_instance

from strategies import EXAMPLE_INSTANCE as EXAMPLE



def edited(**changes):
    """A copy of EXAMPLE with ``changes`` applied: keys ``nodeI_field`` or top-level fields."""
    data = copy.deepcopy(EXAMPLE)
    for key, value in changes.items():
        if key.startswith("node") and key != "nodes":
            idx, field = key[4:].split("_", 1)
            if value is KeyError:
                del data["nodes"][int(idx)][field]
            else:
                data["nodes"][int(idx)][field] = value
        else:
            data[key] = value
    return data


def test_example_loads_and_round_trips(tmp_path):
    inst = Instance.from_dict(EXAMPLE)
    assert inst.n == 3 and inst.is_chain and len(inst.skips) == 1
    assert inst.n_states.tolist() == [2, 3, 2]
    path = tmp_path / "x.json"
    save_instance(inst, path)
    back = load_instance(path)
    assert back.to_dict() == inst.to_dict()
    assert json.loads(path.read_text())["skips"] == EXAMPLE["skips"]


def test_skip_matrix_is_the_product_down_the_chain():
    inst = Instance.from_dict(EXAMPLE)
    skip = [e for e in inst.edges() if e[0] == 0 and e[1] == 2][0]
    P2 = np.array(EXAMPLE["nodes"][1]["transition"])
    P3 = np.array(EXAMPLE["nodes"][2]["transition"])
    np.testing.assert_allclose(skip[3], P2 @ P3)
    assert skip[2] == 1.7


MALFORMED = [
    # (changes, words the message must contain)
    (dict(nodes=[]), ["empty"]),
    (dict(nodes=None), ["empty"]),
    (dict(node1_name="exit1"), ["exit1", "duplicate"]),
    (dict(node1_name=""), ["name"]),
    (dict(node1_parent="nope"), ["exit2", "parent", "nope"]),
    (dict(node1_parent=3), ["exit2", "parent"]),
    (dict(node0_parent="exit3", node0_initial=KeyError,
          node0_transition=[[0.5, 0.5], [0.5, 0.5]]), ["cycle"]),
    (dict(node1_parent="exit2", node2_parent="exit1", node2_transition=[[1.0, 0.0], [0.0, 1.0]]), ["cycle"]),
    (dict(node0_initial=[0.5, 0.6]), ["exit1", "initial", "sums"]),
    (dict(node0_initial=[1.5, -0.5]), ["exit1", "initial", "negative"]),
    (dict(node0_initial=[1.0]), ["exit1", "initial", "entries"]),
    (dict(node0_initial=KeyError), ["exit1", "initial", "missing"]),
    (dict(node0_transition=[[1.0, 0.0]]), ["exit1", "transition", "root"]),
    (dict(node1_transition=KeyError), ["exit2", "transition", "missing"]),
    (dict(node1_initial=[0.2, 0.3, 0.5]), ["exit2", "initial"]),
    (dict(node1_transition=[[0.6, 0.3, 0.2], [0.1, 0.2, 0.7]]), ["exit2", "transition", "row 0", "sums"]),
    (dict(node1_transition=[[0.6, 0.3, 0.1], [0.1, 0.2, 0.7 + 1e-8]]), ["exit2", "transition", "row 1"]),
    (dict(node1_transition=[[0.6, 0.5, -0.1], [0.1, 0.2, 0.7]]), ["exit2", "transition", "negative"]),
    (dict(node1_transition=[[0.6, 0.3, 0.1]]), ["exit2", "transition", "shape"]),
    (dict(node1_transition=[[0.6, 0.4], [0.3, 0.7]]), ["exit2", "transition", "shape"]),
    (dict(node1_transition=[0.6, 0.3, 0.1]), ["exit2", "transition", "2-D"]),
    (dict(node1_transition=[[0.6, 0.3, float("nan")], [0.1, 0.2, 0.7]]), ["exit2", "transition", "finite"]),
    (dict(node2_cost=-1.0), ["exit3", "cost", ">= 0"]),
    (dict(node2_cost=float("inf")), ["exit3", "cost", "finite"]),
    (dict(node2_cost="1"), ["exit3", "cost", "number"]),
    (dict(node2_cost=KeyError), ["exit3", "cost", "missing"]),
    (dict(node2_losses=[0.4, -0.02]), ["exit3", "losses", "negative"]),
    (dict(node2_losses=[0.4, float("inf")]), ["exit3", "losses", "finite"]),
    (dict(node2_losses=[]), ["exit3", "losses", "empty"]),
    (dict(node2_losses=KeyError), ["exit3", "losses", "missing"]),
    (dict(node2_losses=[0.4, 0.02, 0.1]), ["exit3", "transition", "shape"]),
    (dict(node2_lossess=[0.4, 0.02]), ["exit3", "unknown field"]),
    (dict(fallback=-0.5), ["fallback"]),
    (dict(fallback=float("nan")), ["fallback", "finite"]),
    (dict(colour="red"), ["unknown top-level field"]),
    (dict(skips=[{"from": "exit1", "to": "exit2", "cost": 1.0}]), ["skip", "exit1", "exit2", "two exits"]),
    (dict(skips=[{"from": "exit3", "to": "exit1", "cost": 1.0}]), ["skip", "not down the chain"]),
    (dict(skips=[{"from": "exit1", "to": "exit9", "cost": 1.0}]), ["skip", "'to'", "exit9"]),
    (dict(skips=[{"from": "exit1", "to": "exit3", "cost": -1.0}]), ["skip", "cost", ">= 0"]),
    (dict(skips=[{"from": "exit1", "to": "exit3"}]), ["skip", "missing"]),
    (dict(skips=[EXAMPLE["skips"][0], EXAMPLE["skips"][0]]), ["duplicate skip"]),
    (dict(node2_parent="exit1", node2_transition=[[0.8, 0.2], [0.3, 0.7]]), ["skip", "single chain"]),
]


@pytest.mark.parametrize("changes, words", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_instances_are_rejected_naming_the_culprit(changes, words):
    with pytest.raises(InstanceError) as err:
        Instance.from_dict(edited(**changes))
    msg = str(err.value)
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_nothing_is_renormalised():
    # within tolerance is accepted as given, beyond it is an error -- never rescaled
    ok = edited(node1_transition=[[0.6, 0.3, 0.1 + 1e-12], [0.1, 0.2, 0.7]])
    inst = Instance.from_dict(ok)
    assert inst.transitions[1][0, 2] == 0.1 + 1e-12


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InstanceError, match="bad.json.*not valid JSON"):
        load_instance(bad)
    with pytest.raises(InstanceError, match="missing.json"):
        load_instance(tmp_path / "missing.json")
    bad.write_text(json.dumps(edited(node2_cost=-2)))
    with pytest.raises(InstanceError, match=r"bad.json.*exit3.*cost"):
        load_instance(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(InstanceError, match="JSON object"):
        load_instance(bad)


def test_builders_match_the_json_format():
    n = EXAMPLE["nodes"]
    chain = Instance.chain(
        losses=[x["losses"] for x in n], initial=n[0]["initial"],
        transitions=[n[1]["transition"], n[2]["transition"]], costs=[1.0, 1.0, 1.0],
        names=["exit1", "exit2", "exit3"], skips=[("exit1", 2, 1.7)], name="three exits",
    )
    assert chain.to_dict() == Instance.from_dict(EXAMPLE).to_dict()
    tree = Instance.tree([None, 0, 0], [[0.1, 0.2], [0.3], [0.5, 0.0]],
                         [[0.4, 0.6], [[1.0], [1.0]], [[0.5, 0.5], [0.0, 1.0]]], [0.1, 0.2, 0.3])
    assert tree.children[0] == (1, 2) and not tree.is_chain and tree.roots == (0,)
    with pytest.raises(InstanceError, match="transition matrices"):
        Instance.chain([[0.1], [0.2]], [1.0], [], [0.0, 0.0])
    with pytest.raises(InstanceError, match="'costs' has 2 entries for 3 nodes"):
        Instance.tree([None, 0, 0], [[0.1], [0.3], [0.5]], [[1.0], [[1.0]], [[1.0]]], [0.1, 0.2])


def test_arrays_are_read_only():
    inst = Instance.from_dict(EXAMPLE)
    with pytest.raises(ValueError):
        inst.losses[0][0] = 3.0
    with pytest.raises(ValueError):
        inst.costs[0] = 3.0


@pytest.mark.parametrize("node", [0, 1])
def test_missing_parent_is_named_for_roots_and_others(tmp_path, node):
    data = edited(**{f"node{node}_parent": KeyError})
    name = EXAMPLE["nodes"][node]["name"]
    with pytest.raises(InstanceError, match=rf"node '{name}', field 'parent': missing"):
        Instance.from_dict(data)
    path = tmp_path / "noparent.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InstanceError, match=rf"noparent\.json.*node '{name}', field 'parent': missing"):
        load_instance(path)


def test_empty_path_is_reported_as_empty():
    with pytest.raises(InstanceError, match=r"instance file is an empty path") as err:
        load_instance("")
    assert "folder" not in str(err.value)


def test_chain_needs_a_node_and_iterable_skips():
    with pytest.raises(InstanceError, match="at least one node"):
        Instance.chain([], [0.5, 0.5], [], [])
    args = ([[0.1, 0.2], [0.3, 0.0]], [0.5, 0.5], [[[0.5, 0.5], [0.2, 0.8]]], [1.0, 1.0])
    with pytest.raises(InstanceError, match="'skips' must be an iterable"):
        Instance.chain(*args, skips=5)
    with pytest.raises(InstanceError, match="'skips' must be an iterable"):
        Instance.tree([None, 0], args[0], [args[1], args[2][0]], args[3], skips=5)
