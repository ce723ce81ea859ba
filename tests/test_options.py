"""The one option parser (vlnn._options): keyword options, MATLAB-style
``'Name', value`` pairs and bare flags, and the value converters
(API.md, "Calling convention"; MATCONVNET_SEMANTICS.md sections 0.3 and 21).
"""

import re

import numpy as np
import pytest

from vlnn._options import (GPU_FLAGS, Options, as_float, as_int, as_pair, as_quad,
                           int_vector, parse_options, split_derivative)

F = "vl_nntest"
CONV_DEFAULTS = {"Stride": 1, "Pad": 0, "Dilate": 1}
CONV_FLAGS = ("NoDerData", "NoDerFilters", "NoDerBiases")


def parse(args=(), kwargs=None, defaults=None, flags=CONV_FLAGS, gpu=False):
    return parse_options(F, args, kwargs or {},
                         CONV_DEFAULTS if defaults is None else defaults, flags, gpu)


# ---------------------------------------------------------------------------
# parse_options


class TestParseOptions:
    def test_defaults_and_flags_off_when_nothing_is_given(self):
        o = parse()
        assert isinstance(o, Options)
        assert o == {"Stride": 1, "Pad": 0, "Dilate": 1,
                     "NoDerData": False, "NoDerFilters": False, "NoDerBiases": False}

    def test_keyword_options_use_the_canonical_name(self):
        o = parse(kwargs={"stride": 2, "Pad": [1, 2, 3, 4]})
        assert o["Stride"] == 2 and o["Pad"] == [1, 2, 3, 4] and o["Dilate"] == 1
        assert "stride" not in o

    def test_attribute_access(self):
        o = parse(kwargs={"pad": 3})
        assert o.Pad == 3 and o.NoDerData is False
        with pytest.raises(AttributeError, match="Nonexistent"):
            o.Nonexistent

    def test_matlab_style_pairs(self):
        o = parse(("pad", 1, "stride", 2))
        assert (o.Pad, o.Stride, o.Dilate) == (1, 2, 1)

    def test_values_are_kept_as_given(self):
        # vl_argparse copies values; conversion is the converters' job
        pad = np.array([[1, 2, 3, 4]])
        o = parse(("Pad", pad), {"stride": "anything"})
        assert o.Pad is pad and o.Stride == "anything"

    def test_bare_flags(self):
        o = parse(("NoDerData", "pad", 1, "NoDerBiases"))
        assert o.NoDerData is True and o.NoDerBiases is True and o.NoDerFilters is False
        assert o.Pad == 1

    def test_flags_as_keywords_become_bools(self):
        o = parse(kwargs={"noderdata": 1, "NoDerFilters": 0, "no_der_biases": True})
        assert o.NoDerData is True and o.NoDerFilters is False and o.NoDerBiases is True

    @pytest.mark.parametrize("name", ["numGroups", "numgroups", "NUMGROUPS", "num_groups",
                                      "Num_Groups", "_num__groups_", "NumGroups"])
    def test_names_are_case_and_underscore_insensitive(self, name):
        defaults = {"Upsample": 1, "Crop": 0, "NumGroups": 1}
        by_kw = parse(kwargs={name: 4}, defaults=defaults)
        by_pair = parse((name, 4), defaults=defaults)
        assert by_kw.NumGroups == 4 and by_pair.NumGroups == 4
        assert by_kw == by_pair

    @pytest.mark.parametrize("name", ["nocudnn", "NOCUDNN", "no_cudnn", "NoCudnn"])
    def test_flag_names_are_case_and_underscore_insensitive(self, name):
        assert parse((name,), gpu=True).NoCudnn is True
        assert parse(kwargs={name: True}, gpu=True).NoCudnn is True

    def test_last_pair_wins(self):
        assert parse(("pad", 1, "PAD", 2)).Pad == 2

    def test_pairs_and_keywords_together(self):
        o = parse(("pad", 1, "NoDerData"), {"stride": 2})
        assert (o.Pad, o.Stride, o.NoDerData) == (1, 2, True)

    def test_gpu_flags_and_workspace_option(self):
        o = parse(("Cudnn", "NoCudnn", "Verbose", "CudnnWorkspaceLimit", 1024), gpu=True)
        assert o.Cudnn is True and o.NoCudnn is True and o.Verbose is True
        assert o.CudnnWorkspaceLimit == 1024
        o = parse(gpu=True)
        assert all(o[f] is False for f in GPU_FLAGS) and o.CudnnWorkspaceLimit is None
        assert parse(kwargs={"cudnn_workspace_limit": 5}, gpu=True).CudnnWorkspaceLimit == 5

    @pytest.mark.parametrize("args", [("NoCudnn",), ("CudnnWorkspaceLimit", 10)])
    def test_gpu_flags_rejected_where_not_accepted(self, args):
        with pytest.raises(TypeError, match=f"unknown option '{args[0]}'"):
            parse(args, gpu=False)

    def test_defaults_are_not_mutated(self):
        defaults = {"Stride": 1, "Pad": 0}
        parse(("pad", 3), {"stride": 2}, defaults=defaults, gpu=True)
        assert defaults == {"Stride": 1, "Pad": 0}

    def test_unknown_pair_option_names_it_and_lists_the_valid_ones(self):
        with pytest.raises(TypeError) as info:
            parse(("pad", 1, "Padding", 2), gpu=True)
        msg = str(info.value)
        assert msg.startswith(F + ":")
        assert "unknown option 'Padding'" in msg
        valid = msg.split("valid options:")[1]
        for name in ("Stride", "Pad", "Dilate", "NoDerData", "NoDerFilters", "NoDerBiases",
                     "Cudnn", "NoCudnn", "Verbose", "CudnnWorkspaceLimit"):
            assert re.search(rf"\b{name}\b", valid), name

    def test_unknown_keyword_option(self):
        with pytest.raises(TypeError, match=r"unknown option 'strides'; valid options: .*Stride"):
            parse(kwargs={"strides": 2})

    def test_unknown_option_without_any_valid_ones(self):
        with pytest.raises(TypeError, match=r"unknown option 'foo'; valid options: \(none\)"):
            parse(("foo", 1), defaults={}, flags=())

    @pytest.mark.parametrize("args", [("pad",), ("stride", 2, "Pad"), ("NoDerData", "dilate")])
    def test_option_missing_its_value(self, args):
        with pytest.raises(TypeError, match=f"option '{args[-1]}' needs a value"):
            parse(args)

    @pytest.mark.parametrize("args, shown", [
        ((3,), "int 3"),
        ((2.5, "pad"), "float 2.5"),
        (("pad", 1, 2), "int 2"),          # a value too many
        (("NoDerData", True), "bool True"),  # flags take no value
        ((None,), "NoneType None"),
        ((np.ones(2),), "ndarray"),
    ])
    def test_non_string_in_the_option_position(self, args, shown):
        with pytest.raises(TypeError, match=rf"expected an option name, got {re.escape(shown)}"
                                            r".*valid options: .*Pad"):
            parse(args)


class TestSplitDerivative:
    def test_string_first_starts_the_options(self):
        assert split_derivative(F, ("pad", 1, "stride", 2)) == (None, ("pad", 1, "stride", 2))

    def test_bare_flag_first(self):
        assert split_derivative(F, ("NoCudnn",)) == (None, ("NoCudnn",))

    def test_first_non_string_is_the_derivative(self):
        dy = np.ones((2, 2))
        dzdy, args = split_derivative(F, [dy, "pad", 1])
        assert dzdy is dy
        assert args == ("pad", 1) and isinstance(args, tuple)

    def test_positional_none_is_forward(self):
        assert split_derivative(F, (None, "leak", 0.1)) == (None, ("leak", 0.1))

    def test_keyword_derivative(self):
        dy = np.ones(3)
        dzdy, args = split_derivative(F, ("pad", 1), dzdy=dy)
        assert dzdy is dy and args == ("pad", 1)
        assert split_derivative(F, (), dzdy=dy)[0] is dy

    def test_nothing_given(self):
        assert split_derivative(F, ()) == (None, ())

    @pytest.mark.parametrize("positional", [np.ones(3), None, 1.0])
    def test_both_positional_and_keyword(self, positional):
        with pytest.raises(TypeError, match=rf"{F}: the derivative was given both positionally "
                                            r"and as dzdy="):
            split_derivative(F, (positional, "pad", 1), dzdy=np.ones(3))

    def test_split_then_parse(self):
        dzdy, args = split_derivative(F, ("Pad", 1, "NoDerData"))
        o = parse(args)
        assert dzdy is None and o.Pad == 1 and o.NoDerData is True


# ---------------------------------------------------------------------------
# value converters


class TestAsPair:
    @pytest.mark.parametrize("value", [
        2, 2.0, np.float64(2), np.float32(2), np.int32(2), np.int64(2), np.uint8(2),
        np.array(2), np.array([2]), np.array([[2]]), np.array([[[2.0]]]), [2], (2.0,),
    ])
    def test_scalar_expands_to_y_x(self, value):
        out = as_pair(value, F, "Stride")
        assert out == (2, 2)
        assert all(type(v) is int for v in out)

    @pytest.mark.parametrize("value", [
        [2, 3], (2, 3), [2.0, 3.0], np.array([2, 3]), np.array([2.0, 3.0], np.float32),
        np.array([[2, 3]]),          # 1 x 2, as read from a .mat file
        np.array([[2], [3]]),        # 2 x 1
        np.asfortranarray(np.array([[2.0, 3.0]])),
        [np.float64(2), np.int16(3)],
    ])
    def test_vector_is_y_x(self, value):
        out = as_pair(value, F, "Stride")
        assert out == (2, 3)
        assert all(type(v) is int for v in out)

    @pytest.mark.parametrize("value, count", [([1, 2, 3], 3), ([], 0), (np.ones((2, 2)), 4)])
    def test_wrong_element_count(self, value, count):
        with pytest.raises(ValueError,
                           match=rf"{F}: Stride must have 1 or 2 elements, got {count}"):
            as_pair(value, F, "Stride")

    @pytest.mark.parametrize("value", [1.5, [2, 2.5], np.array([[1.0, 1.0000001]]),
                                       np.float32(0.5) + 1])
    def test_non_integral_value(self, value):
        with pytest.raises(ValueError, match=rf"{F}: Stride must be integral"):
            as_pair(value, F, "Stride")

    @pytest.mark.parametrize("value", [0, -1, [1, 0], np.array([[0, 2]])])
    def test_minimum_default_is_one(self, value):
        with pytest.raises(ValueError, match=rf"{F}: Stride must be >= 1"):
            as_pair(value, F, "Stride")

    def test_custom_minimum(self):
        assert as_pair(0, F, "Stride", minimum=0) == (0, 0)
        assert as_pair([-3, 4], F, "Stride", minimum=None) == (-3, 4)
        with pytest.raises(ValueError, match="Stride must be >= 3, got 2"):
            as_pair(2, F, "Stride", minimum=3)

    @pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, [1, np.nan],
                                       np.array([[np.inf, 1]])])
    def test_nan_and_inf(self, value):
        with pytest.raises(ValueError, match=rf"{F}: Stride must be finite"):
            as_pair(value, F, "Stride")

    @pytest.mark.parametrize("value", ["2", "", b"2", None])
    def test_strings_and_none(self, value):
        with pytest.raises(ValueError, match=rf"{F}: Stride must be numeric"):
            as_pair(value, F, "Stride")

    @pytest.mark.parametrize("value", [1 + 2j, np.array([1, 2], complex), [1, "a"],
                                       np.array([1, None], dtype=object), {"a": 1}])
    def test_non_real_values(self, value):
        with pytest.raises(ValueError, match=rf"{F}: Stride must be (real )?numeric"):
            as_pair(value, F, "Stride")

    def test_ragged_list(self):
        with pytest.raises(ValueError, match=rf"{F}: Stride must be numeric"):
            as_pair([[1], [2, 3]], F, "Stride")

    def test_bools_count_as_zero_and_one(self):
        # MATLAB's logical true is 1 in arithmetic; false then fails the minimum
        assert as_pair(True, F, "Stride") == (1, 1)
        assert as_pair(np.array([True, True]), F, "Stride") == (1, 1)
        with pytest.raises(ValueError, match="Stride must be >= 1"):
            as_pair(False, F, "Stride")

    def test_value_is_not_modified(self):
        value = np.array([[2.0, 3.0]])
        as_pair(value, F, "Stride")
        np.testing.assert_array_equal(value, [[2.0, 3.0]])


class TestAsQuad:
    @pytest.mark.parametrize("value", [1, 1.0, np.float64(1), np.array([[1]]), [1], (1,)])
    def test_scalar_expands_to_top_bottom_left_right(self, value):
        assert as_quad(value, F, "Pad") == (1, 1, 1, 1)

    @pytest.mark.parametrize("value", [
        [0, 1, 2, 3], (0, 1, 2, 3), [0.0, 1.0, 2.0, 3.0], np.arange(4),
        np.array([[0, 1, 2, 3]]), np.array([[0], [1], [2], [3]]), np.arange(4.0).reshape(1, 1, 4),
    ])
    def test_vector_is_top_bottom_left_right(self, value):
        out = as_quad(value, F, "Pad")
        assert out == (0, 1, 2, 3)
        assert all(type(v) is int for v in out)

    def test_matrix_is_read_in_column_major_order(self):
        # MATLAB's pad = [0 2; 1 3] lists its elements column by column
        assert as_quad(np.array([[0, 2], [1, 3]]), F, "Pad") == (0, 1, 2, 3)

    @pytest.mark.parametrize("value, count", [([1, 2], 2), ([1, 2, 3], 3), (np.zeros((1, 5)), 5)])
    def test_wrong_element_count(self, value, count):
        with pytest.raises(ValueError, match=rf"{F}: Pad must have 1 or 4 elements, got {count}"):
            as_quad(value, F, "Pad")

    def test_minimum_default_is_zero(self):
        assert as_quad(0, F, "Pad") == (0, 0, 0, 0)
        with pytest.raises(ValueError, match=r"Pad must be >= 0"):
            as_quad([0, 0, -1, 0], F, "Pad")

    def test_non_integral(self):
        with pytest.raises(ValueError, match=rf"{F}: Pad must be integral"):
            as_quad([0, 0.5, 0, 0], F, "Pad")

    @pytest.mark.parametrize("value, what", [(np.nan, "finite"), ("1", "numeric"),
                                             (None, "numeric")])
    def test_bad_values(self, value, what):
        with pytest.raises(ValueError, match=f"Pad must be {what}"):
            as_quad(value, F, "Pad")


class TestAsInt:
    @pytest.mark.parametrize("value", [2, 2.0, np.float64(2), np.float32(2), np.int8(2),
                                       np.array(2.0), np.array([[2]]), [2], (2.0,), True + 1])
    def test_integral_scalars(self, value):
        out = as_int(value, F, "NumGroups")
        assert out == 2 and type(out) is int

    def test_large_and_negative(self):
        assert as_int(10 ** 9, F, "n") == 10 ** 9
        assert as_int(-3, F, "n") == -3

    def test_minimum(self):
        assert as_int(1, F, "NumGroups", 1) == 1
        with pytest.raises(ValueError, match=rf"{F}: NumGroups must be >= 1, got 0"):
            as_int(0, F, "NumGroups", 1)

    @pytest.mark.parametrize("value", [2.5, np.float64(1e-3), np.array([[2.25]])])
    def test_non_integral(self, value):
        with pytest.raises(ValueError, match=rf"{F}: NumGroups must be integral"):
            as_int(value, F, "NumGroups")

    @pytest.mark.parametrize("value", [[1, 2], np.ones((1, 2)), []])
    def test_not_a_scalar(self, value):
        with pytest.raises(ValueError, match=rf"{F}: NumGroups must have 1 element"):
            as_int(value, F, "NumGroups")

    @pytest.mark.parametrize("value, what", [(np.inf, "finite"), (np.nan, "finite"),
                                             ("2", "numeric"), (None, "numeric"),
                                             (2j, "real numeric")])
    def test_bad_values(self, value, what):
        with pytest.raises(ValueError, match=f"NumGroups must be {what}"):
            as_int(value, F, "NumGroups")

    def test_bool(self):
        assert as_int(True, F, "n") == 1
        assert as_int(np.bool_(False), F, "n") == 0


class TestAsFloat:
    @pytest.mark.parametrize("value, expected", [
        (0.1, 0.1), (1, 1.0), (np.float32(0.5), 0.5), (np.float64(-2.25), -2.25),
        (np.array([[0.25]]), 0.25), ([0.75], 0.75), (np.int16(3), 3.0),
    ])
    def test_real_scalars(self, value, expected):
        out = as_float(value, F, "Leak")
        assert out == expected and type(out) is float

    @pytest.mark.parametrize("value", [[0.1, 0.2], np.zeros((2, 1)), ()])
    def test_not_a_scalar(self, value):
        with pytest.raises(ValueError, match=rf"{F}: Leak must have 1 element"):
            as_float(value, F, "Leak")

    @pytest.mark.parametrize("value, what", [
        (np.nan, "finite"), (-np.inf, "finite"), ("0.1", "numeric"), (None, "numeric"),
        (0.1 + 1j, "real numeric"),
    ])
    def test_bad_values(self, value, what):
        with pytest.raises(ValueError, match=rf"{F}: Leak must be {what}"):
            as_float(value, F, "Leak")


class TestIntVector:
    def test_allowed_counts(self):
        assert int_vector([1, 2, 3], F, "v", (1, 3)) == (1, 2, 3)
        assert int_vector(np.array([[7]]), F, "v", (1, 3)) == (7,)
        with pytest.raises(ValueError, match="v must have 1 or 3 elements, got 2"):
            int_vector([1, 2], F, "v", (1, 3))

    def test_message_shows_the_value(self):
        with pytest.raises(ValueError, match=re.escape("got [1, 2.5]")):
            int_vector([1, 2.5], F, "v", (2,))
