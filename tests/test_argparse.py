"""vl_argparse (vlnn/argparse.py): MatConvNet's vl_argparse.m, tested from its
documented behaviour (API.md, "Porting helpers")."""

import doctest

import numpy as np
import pytest

import vlnn.argparse
from simplenn.struct import Struct
from vlnn import vl_argparse


def defaults():
    return {"batchSize": 256, "learningRate": 0.001,
            "train": {"gpus": [], "numEpochs": 10, "solver": {"beta1": 0.9}},
            "empty": {}, "expDir": "data"}


class TestPairs:
    def test_pairs_update_fields(self):
        o = vl_argparse(defaults(), ["batchSize", 10, "expDir", "out"])
        assert o["batchSize"] == 10 and o["expDir"] == "out" and o["learningRate"] == 0.001

    def test_tuple_of_pairs(self):
        assert vl_argparse({"a": 1}, ("a", 2)) == {"a": 2}

    def test_empty_args(self):
        assert vl_argparse(defaults(), []) == defaults()
        assert vl_argparse(defaults(), None) == defaults()

    def test_last_pair_wins(self):
        assert vl_argparse({"a": 1}, ["a", 2, "A", 3])["a"] == 3

    @pytest.mark.parametrize("name", ["batchsize", "BATCHSIZE", "BatchSize", "batch_size"])
    def test_names_match_case_insensitively_and_keep_the_field_spelling(self, name):
        o = vl_argparse(defaults(), [name, 7])
        assert o["batchSize"] == 7
        assert name not in o or name == "batchSize"
        assert list(o) == list(defaults())

    def test_exact_case_insensitive_match_beats_the_underscore_rule(self):
        o = vl_argparse({"a_b": 1, "ab": 2}, ["A_B", 5])
        assert o == {"a_b": 5, "ab": 2}

    def test_two_fields_matching_case_insensitively_is_ambiguous_hence_unknown(self):
        with pytest.raises(ValueError, match="unknown parameter 'aB'"):
            vl_argparse({"ab": 1, "AB": 2}, ["aB", 3])

    def test_values_are_kept_as_given(self):
        w = np.ones(3)
        assert vl_argparse({"w": None}, ["w", w])["w"] is w

    def test_defaults_are_not_modified(self):
        d = defaults()
        vl_argparse(d, ["batchSize", 1, "train.gpus", 2, "train", {"numEpochs": 3}])
        assert d == defaults()

    def test_result_is_a_copy_of_nested_structs(self):
        d = defaults()
        o = vl_argparse(d, [])
        o["train"]["numEpochs"] = 99
        o["train"]["solver"]["beta1"] = 0
        assert d == defaults()


class TestStructs:
    def test_a_mapping_stands_for_its_pairs(self):
        o = vl_argparse(defaults(), {"batchSize": 5, "LEARNINGRATE": 0.5})
        assert o["batchSize"] == 5 and o["learningRate"] == 0.5

    def test_pairs_and_mappings_mixed(self):
        o = vl_argparse(defaults(), ["batchSize", 5, {"expDir": "x"}, "learningRate", 1])
        assert (o["batchSize"], o["expDir"], o["learningRate"]) == (5, "x", 1)

    def test_struct_valued_defaults_are_updated_recursively(self):
        o = vl_argparse(defaults(), ["train", {"numepochs": 3, "solver": {"BETA1": 0.5}}])
        assert o["train"] == {"gpus": [], "numEpochs": 3, "solver": {"beta1": 0.5}}

    def test_unknown_subfield_is_an_error(self):
        with pytest.raises(ValueError, match="unknown parameter 'epochs'"):
            vl_argparse(defaults(), ["train", {"epochs": 3}])

    def test_non_struct_for_a_struct_parameter(self):
        with pytest.raises(ValueError, match="cannot assign a non-struct value to the struct "
                                             "parameter 'train'"):
            vl_argparse(defaults(), ["TRAIN", 3])

    def test_empty_struct_default_takes_any_fields(self):
        o = vl_argparse(defaults(), ["empty", {"x": 1, "y": {"z": 2}}])
        assert o["empty"] == {"x": 1, "y": {"z": 2}}

    def test_struct_for_a_non_struct_default_replaces_it(self):
        assert vl_argparse({"a": None}, ["a", {"b": 1}]) == {"a": {"b": 1}}

    def test_non_struct_for_an_empty_struct_default(self):
        assert vl_argparse({"a": {}}, ["a", 5]) == {"a": 5}

    def test_dotted_shorthand(self):
        o = vl_argparse(defaults(), ["train.NumEpochs", 4, "train.solver.beta1", 0.1])
        assert o["train"] == {"gpus": [], "numEpochs": 4, "solver": {"beta1": 0.1}}

    def test_dotted_unknown_subfield(self):
        with pytest.raises(ValueError, match="unknown parameter 'nope'"):
            vl_argparse(defaults(), ["train.nope", 4])

    def test_struct_type_is_kept(self):
        d = Struct(batchSize=1, train=Struct(gpus=[]))
        o = vl_argparse(d, ["train.gpus", 1])
        assert type(o) is Struct and type(o.train) is Struct and o.train.gpus == 1
        assert d.train.gpus == []

    def test_mapping_that_is_not_a_dict(self):
        from types import MappingProxyType
        o = vl_argparse(MappingProxyType({"a": 1}), ["a", 2])
        assert o == {"a": 2} and type(o) is dict


class TestFlags:
    def test_nonrecursive_copies_struct_values(self):
        o = vl_argparse(defaults(), ["train", {"numEpochs": 3}], "nonrecursive")
        assert o["train"] == {"numEpochs": 3}
        o = vl_argparse(defaults(), ["train", 3], "NonRecursive")
        assert o["train"] == 3

    def test_nonrecursive_rejects_mappings_in_args(self):
        with pytest.raises(ValueError, match="expected either a param-value pair or a structure "
                                             "at position 0"):
            vl_argparse(defaults(), [{"batchSize": 1}], "nonrecursive")

    def test_nonrecursive_dotted_replaces_the_struct(self):
        o = vl_argparse(defaults(), ["train.gpus", 1], "nonrecursive")
        assert o["train"] == {"gpus": 1}

    def test_merge_adds_unknown_fields(self):
        o = vl_argparse({"a": 1}, ["b", 2, "A", 3, {"c": 4}], "merge")
        assert o == {"a": 3, "b": 2, "c": 4}

    def test_merge_two_structs(self):
        o = vl_argparse({"a": 1, "s": {"x": 1}}, {"s": {"y": 2}, "t": 3}, "MERGE")
        assert o == {"a": 1, "s": {"x": 1, "y": 2}, "t": 3}

    def test_merge_dotted_new_field(self):
        assert vl_argparse({}, ["s.t.u", 1], "merge") == {"s": {"t": {"u": 1}}}

    def test_merge_with_rest_is_always_empty(self):
        assert vl_argparse({"a": 1}, ["b", 2], "merge", nargout=2) == ({"a": 1, "b": 2}, [])

    def test_both_flags(self):
        o = vl_argparse({"s": {"x": 1}}, ["s", {"y": 1}, "z", 2], "merge", "nonrecursive")
        assert o == {"s": {"y": 1}, "z": 2}

    def test_unknown_flag(self):
        with pytest.raises(ValueError, match="unknown flag 'recursive'"):
            vl_argparse({}, [], "recursive")

    def test_too_many_flags(self):
        with pytest.raises(ValueError, match="at most two flags"):
            vl_argparse({}, [], "merge", "merge", "nonrecursive")


class TestRest:
    def test_unmatched_pairs_come_back_in_order(self):
        o, rest = vl_argparse({"a": 1}, ["x", 1, "a", 2, "y", [3]], nargout=2)
        assert o == {"a": 2} and rest == ["x", 1, "y", [3]]

    def test_everything_matched(self):
        assert vl_argparse({"a": 1}, ["a", 2], nargout=2) == ({"a": 2}, [])

    def test_unmatched_fields_of_a_mapping_come_back_as_a_mapping(self):
        o, rest = vl_argparse({"a": 1}, ["p", 0, {"a": 2, "b": 3}, "q", 1], nargout=2)
        assert o == {"a": 2} and rest == ["p", 0, {"b": 3}, "q", 1]

    def test_fully_matched_mapping_is_not_returned(self):
        assert vl_argparse({"a": 1}, [{"a": 2}], nargout=2) == ({"a": 2}, [])

    def test_unmatched_subfields_of_a_struct_parameter(self):
        o, rest = vl_argparse(defaults(), ["train", {"numEpochs": 2, "other": 5}], nargout=2)
        assert o["train"]["numEpochs"] == 2 and rest == ["train", {"other": 5}]

    def test_chained_parsers_as_in_cnn_mnist(self):
        # [opts, varargin] = vl_argparse(opts, varargin) ; ... opts = vl_argparse(opts, varargin)
        args = ["batchNormalization", True, "expDir", "out", "train", {"gpus": 1}]
        first, args = vl_argparse({"batchNormalization": False}, args, nargout=2)
        second = vl_argparse({"expDir": "data", "train": {}}, args)
        assert first == {"batchNormalization": True}
        assert second == {"expDir": "out", "train": {"gpus": 1}}


class TestErrors:
    def test_unknown_parameter_is_named(self):
        with pytest.raises(ValueError) as info:
            vl_argparse(defaults(), ["batchSize", 1, "bachSize", 2])
        msg = str(info.value)
        assert "vl_argparse: unknown parameter 'bachSize'" in msg and "batchSize" in msg

    @pytest.mark.parametrize("opts", [None, [1, 2], "opts", 3])
    def test_opts_must_be_a_struct(self, opts):
        with pytest.raises(TypeError, match="OPTS must be a structure"):
            vl_argparse(opts, [])

    @pytest.mark.parametrize("args, shown", [([3, 4], "int 3"), (["a", 1, None, 2], "NoneType"),
                                             ([np.ones(2)], "ndarray")])
    def test_name_position_must_hold_a_string_or_struct(self, args, shown):
        with pytest.raises(ValueError, match=f"expected either a param-value pair or a "
                                             f"structure .*{shown}"):
            vl_argparse({"a": 0}, args)

    def test_name_without_value(self):
        with pytest.raises(ValueError, match="parameter 'a' has no value"):
            vl_argparse({"a": 0}, ["a", 1, "a"])

    @pytest.mark.parametrize("nargout", [0, 3])
    def test_nargout(self, nargout):
        with pytest.raises(ValueError, match="nargout must be 1 or 2"):
            vl_argparse({}, [], nargout=nargout)


def test_docstring_examples():
    result = doctest.testmod(vlnn.argparse)
    assert result.attempted > 0 and result.failed == 0
