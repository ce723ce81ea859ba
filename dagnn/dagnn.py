"""The DagNN container (MatConvNet's ``dagnn.DagNN``, ``matlab/+dagnn/@DagNN``).

A :class:`DagNN` holds a network that is a directed acyclic graph of
blocks (:class:`dagnn.Layer` subclasses) connected by named *variables*,
with named *parameters* that blocks may share.  ``net.eval(inputs,
derOutputs)`` runs it forward and backward with MatConvNet's exact rules
for memory (values and derivatives released as soon as they are no longer
needed), derivative accumulation and skipping.  Indices are Python's
(0-based); a name that does not exist has the index ``nan``.

The MATLAB methods live one per file in ``@DagNN``; here they are the
methods of one class, in the same groups: structure (``addLayer``,
``removeLayer``, ``rename*``, ``setLayer*``, ``rebuild``), data
(``eval``, ``reset``, ``initParams``, ``move``), information
(``getVarSizes``, ``getVarReceptiveFields``, ``print``) and conversion
(``fromSimpleNN``, ``saveobj``, ``loadobj``, ``copy``).
"""

import copy as _copy
import math
import os
import time
import warnings
from collections.abc import Mapping

import numpy as np

from simplenn.matfile import MatCell, MatStruct, from_loadmat
from simplenn.naming import layer_label
from simplenn.struct import Struct
from vlnn._backend import get_array_module, gpu_module
from vlnn._options import parse_options

from .layer import Layer, layer_class

__all__ = ["DagNN"]

_MODES = {"normal": "normal", "train": "normal", "test": "test"}
_VAR_FIELDS = ("name", "value", "der", "fanin", "fanout", "precious")
_PARAM_FIELDS = ("name", "value", "der", "fanout", "trainMethod", "learningRate", "weightDecay")
_LAYER_FIELDS = ("name", "inputs", "outputs", "params", "inputIndexes", "outputIndexes",
                 "paramIndexes", "forwardTime", "backwardTime", "block")
_TRAIN_METHODS = ("gradient", "average", "notrain")


def _names(value, what):
    """A cell of names (MatConvNet's ``inputs``/``outputs``/``params``):
    a single string becomes a one-element list; ``None`` an empty one."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        value = list(value.ravel(order="F"))
    if not isinstance(value, (list, tuple)):
        hint = ""
        if isinstance(value, (set, frozenset, dict)):
            # MATLAB's cell {'a', 'b'} copied as is is a Python set (unordered)
            # and {} an empty dict
            hint = " (MATLAB's cell {'a', 'b'} is the list ['a', 'b'] in Python, {} is [])"
        raise TypeError(f"{what} must be a name or a list of names, got "
                        f"{type(value).__name__}{hint}")
    out = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise TypeError(f"{what} must hold non-empty strings, got {item!r}")
        out.append(item)
    return out


def _is_empty(value):
    return value is None or getattr(value, "size", 1) == 0 or (
        isinstance(value, (list, tuple)) and len(value) == 0)


def _pairs(values, what):
    """MatConvNet's flat ``{'name', value, ...}`` cell or a mapping, as a
    list of ``(name, value)``."""
    if isinstance(values, Mapping):
        items = list(values.items())
    elif isinstance(values, (list, tuple)):
        if len(values) % 2:
            raise ValueError(f"{what} must be a flat list of 'name', value pairs or a dict; "
                             f"got an odd number ({len(values)}) of elements")
        items = list(zip(values[0::2], values[1::2]))
    else:
        raise TypeError(f"{what} must be a flat list ['name', value, ...] or a dict, "
                        f"got {type(values).__name__}")
    for name, _ in items:
        if not isinstance(name, str):
            raise TypeError(f"{what}: a variable name must be a string, got {name!r}")
    return items


def _note_layer(error, layer, direction):
    """Name the layer an error of ``eval`` came from (MATLAB's stack shows
    the block's method; the Python traceback alone does not say which layer)."""
    if hasattr(error, "add_note"):  # Python 3.11+
        inputs = ", ".join(layer.inputs)
        error.add_note(f"in DagNN.eval, {direction} of layer '{layer.name}' "
                       f"({layer.block.type_name()}, inputs: {inputs or 'none'})")


def _number(x):
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2 ** 53 else x


def _size4(size):
    """A size as a list of Python numbers (ints where integral, NaN kept)."""
    return [_number(s) if not math.isnan(float(s)) else math.nan
            for s in np.asarray(size, dtype=np.float64).ravel()]


def _host(value):
    if value is not None and hasattr(value, "shape") and get_array_module(value) is not np:
        return value.get()
    return value


def _cupy():
    return gpu_module("DagNN.move: moving a network to the GPU")


class DagNN:
    """Directed acyclic graph neural network (MatConvNet's ``dagnn.DagNN``).

    ``net = DagNN()`` is an empty network; layers are added with
    :meth:`addLayer`, converted with :meth:`fromSimpleNN` or read with
    :meth:`loadobj` / :func:`dagnn.load_net`.

    Attributes
    ----------
    layers : list of Struct
        ``name, inputs, outputs, params`` (lists of names),
        ``inputIndexes, outputIndexes, paramIndexes`` (0-based),
        ``forwardTime, backwardTime`` (seconds of the last eval), ``block``.
    vars : list of Struct
        ``name, value, der, fanin, fanout, precious``.
    params : list of Struct
        ``name, value, der, fanout, trainMethod`` (``'gradient'``,
        ``'average'``, ``'notrain'``), ``learningRate, weightDecay``.
    meta : Struct
        Additional information (e.g. the input format).
    mode : str
        ``'normal'`` (default; ``'train'`` is the same) or ``'test'``, in
        which e.g. dropout is the identity and batch normalisation uses its
        moments.
    conserveMemory : bool
        Default True: intermediate values and derivatives are released as
        soon as they are not needed (``precious`` vars are kept).
    accumulateParamDers : bool
        Default False: when True, parameter derivatives are added to the
        existing ones instead of replacing them.
    holdOn : bool
        Set by :meth:`eval`; while True, derivatives are not pushed to the
        parameter server.
    parameterServer : object or None
        An object with ``pushWithIndex(p, der)`` (see
        :meth:`setParameterServer`).
    device : str
        ``'cpu'`` or ``'gpu'`` (read-only; see :meth:`move`).

    Examples
    --------
    >>> import dagnn, numpy as np
    >>> net = dagnn.DagNN()
    >>> net.addLayer('relu', dagnn.ReLU(), 'x', 'y')        # doctest: +SKIP
    >>> net.eval({'x': np.ones((2, 2, 1, 1), np.float32)})  # doctest: +SKIP
    """

    def __init__(self):
        self.layers = []
        self.vars = []
        self.params = []
        self.meta = Struct()
        self._mode = "normal"
        self.holdOn = False
        self.accumulateParamDers = False
        self.conserveMemory = True
        self.parameterServer = None
        self._device = "cpu"
        # used by Layer.forwardAdvanced / backwardAdvanced
        self.numPendingVarRefs = []
        self.numPendingParamRefs = []
        self.computingDerivative = False
        self.executionOrder = []
        self._varNames = {}
        self._paramNames = {}
        self._layerNames = {}

    # ------------------------------------------------------------------
    # flags

    @property
    def mode(self):
        """``'normal'`` or ``'test'`` (assigning ``'train'`` gives ``'normal'``)."""
        return self._mode

    @mode.setter
    def mode(self, mode):
        key = mode.lower() if isinstance(mode, str) else None
        if key not in _MODES:
            raise ValueError(f"DagNN.mode must be 'normal', 'train' or 'test', got {mode!r}")
        self._mode = _MODES[key]

    @property
    def device(self):
        """``'cpu'`` or ``'gpu'``, changed only by :meth:`move`."""
        return self._device

    def __repr__(self):
        return (f"<DagNN: {len(self.layers)} layers, {len(self.vars)} vars, "
                f"{len(self.params)} params, mode {self.mode!r}, device {self.device!r}>")

    # ------------------------------------------------------------------
    # access

    def getInputs(self):
        """Names of the input variables (``fanin == 0``), the sources of the graph."""
        return [v.name for v in self.vars if v.fanin == 0]

    def getOutputs(self):
        """Names of the output variables (``fanout == 0``), the sinks of the graph."""
        return [v.name for v in self.vars if v.fanout == 0]

    @staticmethod
    def _index(table, name):
        if isinstance(name, (list, tuple)):
            return [table.get(n, math.nan) if isinstance(n, str) else math.nan for n in name]
        return table.get(name, math.nan) if isinstance(name, str) else math.nan

    def getLayerIndex(self, name):
        """0-based index of the layer ``name`` (a list of names gives a
        list); ``nan`` when there is no such layer."""
        return self._index(self._layerNames, name)

    def getVarIndex(self, name):
        """0-based index of the variable ``name`` (a list of names gives a
        list); ``nan`` when there is no such variable."""
        return self._index(self._varNames, name)

    def getParamIndex(self, name):
        """0-based index of the parameter ``name`` (a list of names gives a
        list); ``nan`` when there is no such parameter."""
        return self._index(self._paramNames, name)

    def _get(self, kind, table, records, key):
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) or (
                isinstance(key, (list, tuple)) and key
                and all(isinstance(k, (int, np.integer)) for k in key)):
            indexes = [int(k) for k in (key if isinstance(key, (list, tuple)) else [key])]
            if any(not 0 <= k < len(records) for k in indexes):
                raise IndexError(f"Invalid {kind} indexes {indexes} (the net has "
                                 f"{len(records)} {kind}s)")
        else:
            names = [key] if isinstance(key, str) else list(key)
            indexes = self._index(table, names)
            missing = [n for n, i in zip(names, indexes) if isinstance(i, float)]
            if missing:
                raise ValueError(f"Invalid {kind} name `{', '.join(map(str, missing))}`")
        out = [Struct(records[i]) for i in indexes]
        return out if isinstance(key, (list, tuple)) else out[0]

    def getLayer(self, layerName):
        """A copy of the layer record ``layerName`` (a name, a 0-based index
        or a list of either gives a list); an unknown name is a ``ValueError``."""
        return self._get("layer", self._layerNames, self.layers, layerName)

    def getVar(self, varName):
        """A copy of the variable record ``varName`` (as :meth:`getLayer`)."""
        return self._get("variable", self._varNames, self.vars, varName)

    def getParam(self, paramName):
        """A copy of the parameter record ``paramName`` (as :meth:`getLayer`)."""
        return self._get("param", self._paramNames, self.params, paramName)

    def getLayerExecutionOrder(self):
        """The 0-based layer indexes in the order :meth:`eval` runs them
        forward (a topological order of the graph)."""
        return list(self.executionOrder)

    def setParameterServer(self, ps):
        """Use ``ps`` to store and accumulate parameter derivatives.

        ``ps`` needs ``pushWithIndex(p, der)``; when it has
        ``register(name, shape, dtype, device)`` and ``start()``
        (MatConvNet's ``ParameterServer``) every parameter is registered and
        the server started.  Afterwards ``net.params[p].der`` is empty after
        a backward pass (unless ``holdOn``): the derivatives are in the server.
        """
        self.parameterServer = ps
        register = getattr(ps, "register", None)
        if register is not None:
            for param in self.params:
                value = param.value
                device = "cpu" if value is None or get_array_module(value) is np else "gpu"
                dtype = getattr(value, "dtype", np.dtype(np.float64))
                register(param.name, tuple(getattr(value, "shape", (0, 0))), dtype, device)
        start = getattr(ps, "start", None)
        if start is not None:
            start()

    def clearParameterServer(self):
        """Stop using the parameter server (calls its ``stop()`` when it has one)."""
        if self.parameterServer is not None:
            stop = getattr(self.parameterServer, "stop", None)
            if stop is not None:
                stop()
        self.parameterServer = None

    # ------------------------------------------------------------------
    # building the graph

    def addVar(self, name):
        """Add the variable ``name`` unless it exists; returns its index
        (used by :meth:`Layer.attach`)."""
        v = self._varNames.get(name)
        if v is not None:
            return v
        v = len(self.vars)
        self.vars.append(Struct(name=name, value=None, der=None, fanin=0, fanout=0,
                                precious=False))
        self._varNames[name] = v
        return v

    def addParam(self, name):
        """Add the parameter ``name`` unless it exists; returns its index
        (used by :meth:`Layer.attach`).  A new parameter has
        ``trainMethod 'gradient'``, ``learningRate 1``, ``weightDecay 1``."""
        p = self._paramNames.get(name)
        if p is not None:
            return p
        p = len(self.params)
        self.params.append(Struct(name=name, value=None, der=None, fanout=0,
                                  trainMethod="gradient", learningRate=1, weightDecay=1))
        self._paramNames[name] = p
        return p

    def addLayer(self, name, block, inputs, outputs, params=(), *args, **opts):
        """Add a layer.

        ``net.addLayer(name, block, inputs, outputs, params)`` adds the
        block (a :class:`dagnn.Layer` instance) as the layer ``name``,
        reading the variables ``inputs``, writing ``outputs`` and using the
        parameters ``params`` (lists of names; a single name may be a plain
        string).  Missing variables and parameters are created.

        Parameters
        ----------
        name : str
            Unique layer name.
        block : dagnn.Layer
            The block; it is attached to this net (``block.net``,
            ``block.layerIndex``).
        inputs, outputs, params : str or list of str
        skipRebuild : bool, default False
            Option (``'skipRebuild', True`` or keyword): do not call
            :meth:`rebuild` (call it once after adding many layers).

        Raises
        ------
        ValueError
            If a layer ``name`` exists, or the new layer closes a cycle (the
            net is then left as it was).
        TypeError
            If ``block`` is not a :class:`dagnn.Layer` or a name is not a string.
        """
        options = parse_options("DagNN.addLayer", args, opts, {"skipRebuild": False})
        if not isinstance(name, str) or not name:
            raise TypeError(f"DagNN.addLayer: the layer name must be a non-empty string, "
                            f"got {name!r}")
        if not isinstance(block, Layer):
            raise TypeError(f"DagNN.addLayer: the block of layer '{name}' must be an instance "
                            f"of dagnn.Layer, got {type(block).__name__}")
        if name in self._layerNames or any(layer.name == name for layer in self.layers):
            raise ValueError(f"There is already a layer with name '{name}'.")
        record = Struct(name=name,
                        inputs=_names(inputs, f"DagNN.addLayer: inputs of layer '{name}'"),
                        outputs=_names(outputs, f"DagNN.addLayer: outputs of layer '{name}'"),
                        params=_names(params, f"DagNN.addLayer: params of layer '{name}'"),
                        inputIndexes=[], outputIndexes=[], paramIndexes=[],
                        forwardTime=None, backwardTime=None, block=block)
        index = len(self.layers)
        self.layers.append(record)
        self._layerNames[name] = index
        block.attach(self, index)
        if not options.skipRebuild:
            self._rebuild_or_undo(lambda: self._drop_layer(index))

    def _drop_layer(self, index):
        del self.layers[index]

    def _rebuild_or_undo(self, undo):
        """Rebuild; if the change made the graph invalid, undo it, rebuild
        the previous graph and re-raise."""
        try:
            self.rebuild()
        except ValueError:
            undo()
            self.rebuild()
            raise

    def _layer_position(self, layer, fname):
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            if not 0 <= layer < len(self.layers):
                raise IndexError(f"{fname}: no layer at index {layer} (the net has "
                                 f"{len(self.layers)} layers)")
            return int(layer)
        index = self.getLayerIndex(layer)
        if not isinstance(index, int):
            raise ValueError(f"{fname}: Invalid layer name `{layer}`")
        return index

    def removeLayer(self, layerName):
        """Remove the layer ``layerName`` (a name or a list of names);
        variables and parameters no longer used disappear.  An unknown name
        is a ``ValueError``."""
        names = [layerName] if isinstance(layerName, str) else list(layerName)
        indexes = self.getLayerIndex(names)
        missing = [n for n, i in zip(names, indexes) if isinstance(i, float)]
        if missing:
            raise ValueError(f"Invalid layer name `{', '.join(map(str, missing))}`")
        for i in sorted(set(indexes), reverse=True):
            del self.layers[i]
        self.rebuild()

    def _rename_source(self, fname, what, index, oldName, args, opts):
        """The index of the thing a rename* call renames, or ``None`` (with
        MatConvNet's warning unless the option ``quiet``) when it is missing."""
        quiet = parse_options(fname, args, opts, {"quiet": False}).quiet
        if isinstance(index, float):
            if not quiet:
                warnings.warn(f"There is no {what} '{oldName}'.", stacklevel=3)
            return None
        return index

    def renameLayer(self, oldName, newName, *args, **opts):
        """Rename the layer ``oldName`` to ``newName``.  A missing
        ``oldName`` is a warning (none with ``quiet=True``) and nothing
        changes; an existing ``newName`` is a ``ValueError``."""
        index = self._rename_source("DagNN.renameLayer", "layer", self.getLayerIndex(oldName), oldName,
                                    args, opts)
        if index is None:
            return
        if any(layer.name == newName for layer in self.layers):
            raise ValueError(f"There is already a layer '{newName}'.")
        self.layers[index].name = newName
        self.rebuild()

    def renameVar(self, oldName, newName, *args, **opts):
        """Rename the variable ``oldName`` to ``newName`` in every layer.

        If ``newName`` already exists the two variables are merged (the old
        slot disappears at the rebuild); otherwise the variable keeps its
        slot (value, flags) under the new name.  A missing ``oldName`` is a
        warning (none with ``quiet=True``) and nothing changes.
        """
        v = self._rename_source("DagNN.renameVar", "variable", self.getVarIndex(oldName), oldName,
                                    args, opts)
        if v is None:
            return
        exists = any(var.name == newName for var in self.vars)
        for layer in self.layers:
            layer.inputs = [newName if n == oldName else n for n in layer.inputs]
            layer.outputs = [newName if n == oldName else n for n in layer.outputs]
        if not exists:
            self.vars[v].name = newName
            self._varNames[newName] = v
        self.rebuild()

    def renameParam(self, oldName, newName, *args, **opts):
        """Rename the parameter ``oldName`` to ``newName`` in every layer.
        A missing ``oldName`` is a warning (none with ``quiet=True``); an
        existing ``newName`` is a ``ValueError``."""
        p = self._rename_source("DagNN.renameParam", "parameter", self.getParamIndex(oldName), oldName,
                                    args, opts)
        if p is None:
            return
        if any(param.name == newName for param in self.params):
            raise ValueError(f"There is already a parameter '{newName}'.")
        for layer in self.layers:
            layer.params = [newName if n == oldName else n for n in layer.params]
        self.params[p].name = newName
        self._paramNames[newName] = p
        self.rebuild()

    def _set_layer_names(self, layer, names, field, add, fname):
        index = self._layer_position(layer, fname)
        names = _names(names, f"{fname}: {field}")
        for name in names:
            add(name)
        record = self.layers[index]
        previous = record[field]
        record[field] = names

        def undo():
            record[field] = previous
        self._rebuild_or_undo(undo)
        table = self._paramNames if field == "params" else self._varNames
        return [table[n] for n in names]

    def setLayerInputs(self, layer, inputs):
        """Set the inputs of ``layer`` (a name or 0-based index); returns
        the variables' indexes."""
        return self._set_layer_names(layer, inputs, "inputs", self.addVar,
                                     "DagNN.setLayerInputs")

    def setLayerOutputs(self, layer, outputs):
        """Set the outputs of ``layer`` (a name or 0-based index); returns
        the variables' indexes."""
        return self._set_layer_names(layer, outputs, "outputs", self.addVar,
                                     "DagNN.setLayerOutputs")

    def setLayerParams(self, layer, params):
        """Set the parameters of ``layer`` (a name or 0-based index);
        returns the parameters' indexes."""
        return self._set_layer_names(layer, params, "params", self.addParam,
                                     "DagNN.setLayerParams")

    def rebuild(self):
        """Rebuild the indexes, fan-ins and fan-outs, drop unused variables
        and parameters, and compute the execution order (MatConvNet's
        ``rebuild``).  Layers run in decreasing order of their height (the
        longest path to a sink), ties in layer order, as MatConvNet sorts
        them.

        Raises
        ------
        ValueError
            If a layer names a variable or parameter the net does not have,
            or the graph has a cycle (the message names the layers on it).
        """
        var_index, param_index = {}, {}
        for i, var in enumerate(self.vars):
            var_index.setdefault(var.name, i)
        for i, param in enumerate(self.params):
            param_index.setdefault(param.name, i)
        var_fanin = [0] * len(self.vars)
        var_fanout = [0] * len(self.vars)
        param_fanout = [0] * len(self.params)

        def lookup(table, names, kind, l, layer):
            try:
                return [table[n] for n in names]
            except KeyError as exc:
                raise ValueError(f"DagNN.rebuild: {layer_label(l, layer)} uses the "
                                 f"{kind} '{exc.args[0]}', which the net does not have") from None

        # everything is computed (and checked) before the net is changed
        indexes = []
        for l, layer in enumerate(self.layers):
            ins = lookup(var_index, layer.inputs, "variable", l, layer)
            outs = lookup(var_index, layer.outputs, "variable", l, layer)
            pars = lookup(param_index, layer.params, "parameter", l, layer)
            indexes.append((ins, outs, pars))
            for v in ins:
                var_fanout[v] += 1
            for v in outs:
                var_fanin[v] += 1
            for p in pars:
                param_fanout[p] += 1
        order = self._order(indexes, len(self.vars))

        for var, fanin, fanout in zip(self.vars, var_fanin, var_fanout):
            var.fanin, var.fanout = fanin, fanout
        for param, fanout in zip(self.params, param_fanout):
            param.fanout = fanout
        # dump unused variables and parameters, remap the indexes
        var_keep = [fi + fo > 0 for fi, fo in zip(var_fanin, var_fanout)]
        param_keep = [fo > 0 for fo in param_fanout]
        var_remap = _remap(var_keep)
        param_remap = _remap(param_keep)
        self.vars = [var for var, keep in zip(self.vars, var_keep) if keep]
        self.params = [param for param, keep in zip(self.params, param_keep) if keep]
        for l, (layer, (ins, outs, pars)) in enumerate(zip(self.layers, indexes)):
            layer.inputIndexes = [var_remap[v] for v in ins]
            layer.outputIndexes = [var_remap[v] for v in outs]
            layer.paramIndexes = [param_remap[p] for p in pars]
            object.__setattr__(layer.block, "layerIndex", l)
            if layer.block.net is not self:
                object.__setattr__(layer.block, "net", self)

        self._varNames = {var.name: i for i, var in enumerate(self.vars)}
        self._paramNames = {param.name: i for i, param in enumerate(self.params)}
        self._layerNames = {layer.name: i for i, layer in enumerate(self.layers)}
        self.executionOrder = order

    def _order(self, indexes, num_vars):
        """MatConvNet's ``getOrder``: the height of each layer (1 + the
        largest height of the layers reading its outputs), sorted in
        decreasing order, stable.  Iterative, so deep nets need no
        recursion.  ``indexes`` holds each layer's (inputs, outputs, params)
        variable indexes."""
        readers = [[] for _ in range(num_vars)]
        for l, (ins, _, _) in enumerate(indexes):
            for v in ins:
                readers[v].append(l)
        children = []
        for _, outs, _ in indexes:
            seen, kids = set(), []
            for v in outs:
                for child in readers[v]:
                    if child not in seen:
                        seen.add(child)
                        kids.append(child)
            children.append(kids)
        height = [0] * len(self.layers)   # 0 unvisited, -1 open, > 0 done
        for root in range(len(self.layers)):
            if height[root]:
                continue
            height[root] = -1
            stack = [(root, iter(children[root]))]
            while stack:
                layer, kids = stack[-1]
                advanced = False
                for child in kids:
                    if height[child] == -1:
                        path = [l for l, _ in stack]
                        cycle = path[path.index(child):] + [child]
                        raise ValueError(
                            "DagNN: the network graph contains a cycle through the layers "
                            + " -> ".join(f"'{self.layers[l].name}'" for l in cycle)
                            + " (" + ", ".join(f"net.layers[{l}]" for l in cycle[:-1]) + ")")
                    if height[child] == 0:
                        height[child] = -1
                        stack.append((child, iter(children[child])))
                        advanced = True
                        break
                if not advanced:
                    stack.pop()
                    height[layer] = 1 + max((height[c] for c in children[layer]), default=0)
        return sorted(range(len(self.layers)), key=lambda l: -height[l])

    # ------------------------------------------------------------------
    # data

    def reset(self):
        """Clear every variable value and derivative and every parameter
        derivative, stop using the parameter server, and reset each block
        (e.g. a Loss layer's running average)."""
        self.clearParameterServer()
        for var in self.vars:
            var.value = None
            var.der = None
        for param in self.params:
            param.der = None
        for layer in self.layers:
            layer.block.reset()

    def initParams(self):
        """Initialise every parameter with its block's ``initParams()``
        (usually random), on the net's device."""
        to_device = _cupy().asarray if self.device == "gpu" else _host
        for l, layer in enumerate(self.layers):
            values = list(layer.block.initParams() or [])
            if len(values) != len(layer.paramIndexes):
                raise ValueError(
                    f"DagNN.initParams: the block of {layer_label(l, layer)} "
                    f"({layer.block.type_name()}) returned {len(values)} initial values for "
                    f"{len(layer.paramIndexes)} parameters {layer.params}")
            for p, value in zip(layer.paramIndexes, values):
                self.params[p].value = None if value is None else to_device(value)

    def move(self, device):
        """Move the net to ``'cpu'`` (NumPy) or ``'gpu'`` (CuPy, imported
        only here).  The net is reset first (values and derivatives
        cleared), then the parameters are moved and each block's ``move``
        is called."""
        if device not in ("cpu", "gpu"):
            raise ValueError(f"DagNN.move: DEVICE must be either 'cpu' or 'gpu', got {device!r}")
        to_device = _cupy().asarray if device == "gpu" else _host
        self.reset()
        self._device = device
        for param in self.params:
            if param.value is not None:
                param.value = to_device(param.value)
        for layer in self.layers:
            layer.block.move(device)

    def copy(self):
        """A deep copy, as MATLAB's ``copy(net)``: MatConvNet's
        ``loadobj(saveobj())``, so the copy has the structure, parameter
        values, ``learningRate``, ``weightDecay``, ``precious`` flags and
        ``meta`` (all copied, never shared), its blocks are new objects
        attached to it, it is on the CPU, reset, with the default flags.
        Unlike MatConvNet, the original is left untouched (not reset, not
        moved to the CPU)."""
        saved = self.saveobj()
        for param in saved.params:
            if param.value is not None:
                param.value = np.array(param.value, copy=True)
        saved.meta = _copy.deepcopy(saved.meta)
        return DagNN.loadobj(saved)

    def __copy__(self):
        """``copy.copy(net)`` is :meth:`copy`, as MATLAB's ``copy(net)`` (a
        shallow copy would share the layers, variables and blocks with the
        original, so evaluating it would write into the original)."""
        return self.copy()

    def eval(self, inputs, derOutputs=None, *args, **opts):
        """Evaluate the network forward, and backward when ``derOutputs`` is given.

        ``net.eval(inputs)`` sets the input variables and runs every layer
        forward in the execution order; the results are in
        ``net.vars[i].value``.  ``net.eval(inputs, derOutputs)`` then sets
        the derivatives of the named outputs and runs the layers backward:
        variable derivatives are in ``net.vars[i].der`` and parameter
        derivatives in ``net.params[i].der``.

        Rules (MatConvNet's ``eval`` and ``Layer.forwardAdvanced`` /
        ``backwardAdvanced``):

        - a layer with an empty (``None``) input is skipped forward; a layer
          whose output derivatives are not all set is skipped backward;
        - with ``conserveMemory`` (default), a variable's value is released
          once its last reader has run, unless it is ``precious`` or
          derivatives are being computed; backward releases each output's
          value and derivative once its layer has used them (unless
          precious).  So after a forward pass only the outputs and precious
          variables keep values, after a backward pass the inputs;
        - derivatives of a variable read by several layers are summed, as
          are those of a parameter shared by several layers; with
          ``accumulateParamDers`` they are also added to the previous ones;
        - with a ``parameterServer`` (and not ``holdOn``), a parameter's
          derivative is pushed to it and cleared once complete.

        Parameters
        ----------
        inputs : list or dict
            MatConvNet's flat list ``['input', x, 'label', c]`` or a dict
            ``{'input': x, 'label': c}``.
        derOutputs : list or dict, optional
            Likewise ``['objective', 1]``: the derivative of the objective
            with respect to each named output, a number or an array shaped
            like the output.  Forward only when omitted or empty.
        holdOn : bool, default False
            Option: keep the parameter derivatives instead of pushing them
            to the parameter server.

        Raises
        ------
        ValueError
            If a name in ``inputs`` or ``derOutputs`` is not a variable of
            the net (all such names are listed).
        """
        options = parse_options("DagNN.eval", args, opts, {"holdOn": False})
        derivative = derOutputs is not None and len(derOutputs) > 0
        self.computingDerivative = derivative
        input_pairs = _pairs(inputs, "DagNN.eval: inputs")
        der_pairs = _pairs(derOutputs, "DagNN.eval: derOutputs") if derivative else []
        missing = [n for n, _ in input_pairs if n not in self._varNames]
        if missing:
            raise ValueError(
                "DagNN.eval: no variable of name " + ", ".join(f"'{n}'" for n in missing)
                + f" could be found in the DAG (variables: {', '.join(self._varNames)})")
        missing = [n for n, _ in der_pairs if n not in self._varNames]
        if missing:
            raise ValueError(
                "DagNN.eval: Invalid `derOutputs`, variables {" + ", ".join(missing)
                + "} do not exist in the network")

        variables = self.vars
        for name, value in input_pairs:
            variables[self._varNames[name]].value = value

        self.numPendingVarRefs = [var.fanout for var in variables]
        layers = self.layers
        order = self.executionOrder
        clock = time.perf_counter
        for l in order:
            layer = layers[l]
            start = clock()
            try:
                layer.block.forwardAdvanced(layer)
            except Exception as error:
                _note_layer(error, layer, "forward")
                raise
            layer.forwardTime = clock() - start

        if not derivative:
            return
        self.holdOn = bool(options.holdOn)
        for name, value in der_pairs:
            variables[self._varNames[name]].der = value
        self.numPendingVarRefs = [0] * len(variables)
        self.numPendingParamRefs = [0] * len(self.params)
        for l in reversed(order):
            layer = layers[l]
            start = clock()
            try:
                layer.block.backwardAdvanced(layer)
            except Exception as error:
                _note_layer(error, layer, "backward")
                raise
            layer.backwardTime = clock() - start

    # ------------------------------------------------------------------
    # information

    def getVarSizes(self, inputSizes):
        """The size of every variable from the sizes of the inputs.

        ``sizes = net.getVarSizes(['input', [28, 28, 1, 7]])`` (or a dict)
        returns one 4-element list per variable, in ``net.vars`` order,
        computed with each block's ``getOutputSizes``; NaN where unknown
        (a variable not reachable from the given inputs).  An input size
        with fewer than 4 elements is completed with ones; an empty one is
        ``[0, 0, 0, 0]``.

        Raises
        ------
        ValueError
            If a name is not a variable of the net.
        """
        sizes = [[math.nan] * 4 for _ in self.vars]
        for name, size in _pairs(inputSizes if inputSizes is not None else [],
                                 "DagNN.getVarSizes: inputSizes"):
            v = self.getVarIndex(name)
            if isinstance(v, float):
                raise ValueError(f"DagNN.getVarSizes: Variable `{name}` not found in the network.")
            if _is_empty(size):
                sizes[v] = [0, 0, 0, 0]
            else:
                size = _size4(size)
                sizes[v] = size + [1] * (4 - len(size))
        for l in self.executionOrder:
            layer = self.layers[l]
            out = layer.block.getOutputSizes([sizes[v] for v in layer.inputIndexes]) or []
            for k, v in enumerate(layer.outputIndexes):
                sizes[v] = _size4(out[k]) if k < len(out) and not _is_empty(out[k]) \
                    else [math.nan] * 4
        return sizes

    def getVarReceptiveFields(self, var):
        """Receptive fields of every variable in the variable ``var``.

        ``rfs = net.getVarReceptiveFields('input')`` returns one record per
        variable (``net.vars`` order) with ``size``, ``stride`` and
        ``offset`` (2-element lists: a pixel ``y`` (1-based) of that
        variable depends on the pixels ``stride*(y-1) + offset -/+
        (size-1)/2`` of ``var``); they are ``None`` for variables that do
        not depend on ``var`` and ``[nan, nan]`` where the field cannot be
        expressed as a sliding window.  ``var`` may be a name, a 0-based
        index, or a list of either (then a list of such lists).
        """
        many = isinstance(var, (list, tuple))
        wanted = list(var) if many else [var]
        indexes = []
        for w in wanted:
            if isinstance(w, (int, np.integer)) and not isinstance(w, bool):
                if not 0 <= w < len(self.vars):
                    raise IndexError(f"DagNN.getVarReceptiveFields: no variable at index {w}")
                indexes.append(int(w))
            else:
                v = self.getVarIndex(w)
                if isinstance(v, float):
                    raise ValueError(f"DagNN.getVarReceptiveFields: Variable {w} not found.")
                indexes.append(v)
        empty = (None, None, None)
        one = (np.ones(2), np.ones(2), np.ones(2))
        table = [[empty] * len(self.vars) for _ in indexes]
        for w, v in enumerate(indexes):
            table[w][v] = one
        for l in self.executionOrder:
            layer = self.layers[l]
            ins, outs = layer.inputIndexes, layer.outputIndexes
            block_rfs = _block_receptive_fields(layer.block.getReceptiveFields(), len(ins),
                                                len(outs))
            for row in table:
                for i, vi in enumerate(ins):
                    for j, vo in enumerate(outs):
                        rf = _compose(row[vi], block_rfs[i][j])
                        row[vo] = _resolve([row[vo], rf])
        out = [[Struct(size=_rf_list(rf[0]), stride=_rf_list(rf[1]), offset=_rf_list(rf[2]))
                for rf in row] for row in table]
        return out if many else out[0]

    def print(self, inputSizes=None, *args, **opts):
        """Print information about the network (MatConvNet's ``print``).

        ``net.print()`` prints tables of the layers and the memory;
        ``net.print(['input', [224, 224, 3, 1]])`` also the variables with
        their sizes.  The text is printed and returned.  See
        :func:`dagnn.print.print_net` for the options (``All``, ``Layers``,
        ``Parameters``, ``Variables``, ``Dependencies``, ``Format``
        ascii/latex/csv/digraph/dot, ``MaxNumColumns``, ``FigurePath``,
        ``dotArgs``).
        """
        from .print import print_net

        return print_net(self, inputSizes, *args, **opts)

    # ------------------------------------------------------------------
    # conversion

    @staticmethod
    def fromSimpleNN(net, *args, **opts):
        """A DagNN from a SimpleNN network (MatConvNet's ``fromSimpleNN``).

        ``net = DagNN.fromSimpleNN(simplenet)`` tidies the SimpleNN network
        (a mapping, :func:`simplenn.vl_simplenn_tidy` first) and converts
        each layer to its block: ``conv`` -> Conv, ``convt`` ->
        ConvTranspose, ``pool`` -> Pooling, ``normalize``/``lrn`` -> LRN,
        ``dropout`` -> DropOut, ``relu`` -> ReLU, ``sigmoid`` -> Sigmoid,
        ``softmax`` -> SoftMax, ``softmaxloss`` -> ``Loss('loss',
        'softmaxlog')``, ``bnorm`` -> BatchNorm.  Names:

        - variables ``x0`` (the input), ``x1``, ..., ``xL``: layer ``l``
          (1-based) maps ``x(l-1)`` to ``x(l)``; a softmaxloss layer has the
          second input ``label`` (then ``label1``, ``label2``, ...);
        - layers keep their names (unnamed ones are ``layerN``);
          parameters are ``<layer>f``, ``<layer>b`` (conv/convt filters
          and biases) and ``<layer>m``, ``<layer>b``, ``<layer>x`` (bnorm
          multipliers, biases, moments); the layer's ``learningRate`` and
          ``weightDecay`` are copied (a bnorm's moments get weight decay 0).

        With ``canonicalNames=True`` the input is ``input``, each SoftMax
        output ``prob`` (``prob1``, ...) and its input ``prediction``, each
        Loss output ``objective`` and its input ``prediction`` unless it is
        a ``prob`` variable.  ``meta`` is copied (``meta.inputs[0].name``
        follows the input's name).  Parameter values are copied to the CPU.

        Raises
        ------
        ValueError
            For a layer type DagNN does not support (``custom``, ``loss``,
            ``pdist``, ...), naming the layer.
        """
        from simplenn.tidy import vl_simplenn_tidy

        options = parse_options("DagNN.fromSimpleNN", args, opts, {"canonicalNames": False})
        snet = vl_simplenn_tidy(net)
        obj = DagNN()
        obj.meta = _copy.deepcopy(snet.meta)
        for l, slayer in enumerate(snet.layers):
            inputs = [f"x{l}"]
            outputs = [f"x{l + 1}"]
            name = slayer.get("name") or f"layer{l + 1}"
            kind = slayer.get("type")
            params = []  # [name, value, learningRate, weightDecay]
            weights = slayer.get("weights") or []
            rates = _rates(slayer.get("learningRate"))
            decays = _rates(slayer.get("weightDecay"))
            if kind in ("conv", "convt"):
                filters = weights[0] if weights else None
                bias = weights[1] if len(weights) > 1 else None
                has_bias = not _is_empty(bias)
                params.append([f"{name}f", filters, _at(rates, 0), _at(decays, 0)])
                if has_bias:
                    params.append([f"{name}b", bias, _at(rates, 1), _at(decays, 1)])
                size = list(np.shape(filters))
                if kind == "conv":
                    block = layer_class("dagnn.Conv")()
                    block.size = size
                    block.pad = slayer.pad
                    block.stride = slayer.stride
                    block.dilate = slayer.dilate
                else:
                    block = layer_class("dagnn.ConvTranspose")()
                    block.size = size
                    block.upsample = slayer.upsample
                    block.crop = slayer.crop
                    block.numGroups = slayer.numGroups
                block.hasBias = has_bias
                block.opts = list(slayer.get("opts") or [])
            elif kind == "pool":
                block = layer_class("dagnn.Pooling")()
                block.method = slayer.method
                block.poolSize = slayer.pool
                block.pad = slayer.pad
                block.stride = slayer.stride
                block.opts = list(slayer.get("opts") or [])
            elif kind in ("normalize", "lrn"):
                block = layer_class("dagnn.LRN")()
                block.param = slayer.param
            elif kind == "dropout":
                block = layer_class("dagnn.DropOut")()
                block.rate = slayer.rate
            elif kind == "relu":
                block = layer_class("dagnn.ReLU")()
                block.leak = slayer.leak
            elif kind == "sigmoid":
                block = layer_class("dagnn.Sigmoid")()
            elif kind == "softmax":
                block = layer_class("dagnn.SoftMax")()
            elif kind == "softmaxloss":
                block = layer_class("dagnn.Loss")("loss", "softmaxlog")
                inputs.append(obj._new_var_name("label"))
            elif kind == "bnorm":
                block = layer_class("dagnn.BatchNorm")()
                padded = list(weights) + [None] * (3 - len(weights))
                params.append([f"{name}m", padded[0], _at(rates, 0), _at(decays, 0)])
                params.append([f"{name}b", padded[1], _at(rates, 1), _at(decays, 1)])
                params.append([f"{name}x", padded[2], _at(rates, 2),
                               0 if decays is not None else None])
            else:
                raise ValueError(f"DagNN.fromSimpleNN: {layer_label(l, slayer)}: "
                                 f"type '{kind}' is unsupported")
            obj.addLayer(name, block, inputs, outputs, [p[0] for p in params])
            for pname, value, rate, decay in params:
                param = obj.params[obj.getParamIndex(pname)]
                if not _is_empty(value):
                    param.value = np.array(_host(value), copy=True)
                if rate is not None:
                    param.learningRate = rate
                if decay is not None:
                    param.weightDecay = decay

        if options.canonicalNames:
            for l in range(len(obj.layers)):
                layer = obj.layers[l]
                block = layer.block
                if l == 0:
                    obj.renameVar(layer.inputs[0], "input")
                if block.type_name() == "dagnn.SoftMax":
                    obj.renameVar(obj.layers[l].outputs[0], obj._new_var_name("prob"))
                    obj.renameVar(obj.layers[l].inputs[0], obj._new_var_name("prediction"))
                if block.type_name() == "dagnn.Loss":
                    obj.renameVar(obj.layers[l].outputs[0], "objective")
                    if not obj.layers[l].inputs[0].startswith("prob"):
                        obj.renameVar(obj.layers[l].inputs[0], obj._new_var_name("prediction"))

        if isinstance(obj.meta, Mapping) and "inputs" in obj.meta and obj.layers:
            first = obj.layers[0].inputs[0]
            entries = obj.meta["inputs"]
            if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
                entries[0]["name"] = first
            elif isinstance(entries, Mapping):
                entries["name"] = first
        return obj

    def _new_var_name(self, prefix):
        """MatConvNet's ``getNewVarName``: ``prefix``, else ``prefix1``,
        ``prefix2``, ... whichever is not a variable yet."""
        names = {var.name for var in self.vars}
        t, name = 0, prefix
        while name in names:
            t += 1
            name = f"{prefix}{t}"
        return name

    def saveobj(self):
        """The network as plain data (MatConvNet's ``saveobj``).

        Returns a :class:`~simplenn.struct.Struct` with ``vars`` (a list of
        ``Struct(name, precious)``), ``params`` (``Struct(name, value,
        learningRate, weightDecay)``; values on the host, not copied),
        ``layers`` (``Struct(name, type, inputs, outputs, params, block)``
        with ``type`` the MATLAB class name, e.g. ``'dagnn.Conv'``, and
        ``block`` the block's saved properties) and ``meta``; what
        :func:`dagnn.save_net` writes and :meth:`loadobj` reads.  As in
        MatConvNet, ``trainMethod`` is not saved (a BatchNorm block sets its
        moments' again when loaded) and neither are values and derivatives
        of variables.  Unlike MatConvNet, the net is not reset or moved.
        """
        return Struct(
            vars=[Struct(name=var.name, precious=bool(var.precious)) for var in self.vars],
            params=[Struct(name=param.name, value=_host(param.value),
                           learningRate=param.learningRate, weightDecay=param.weightDecay)
                    for param in self.params],
            layers=[Struct(name=layer.name, type=layer.block.type_name(),
                           inputs=list(layer.inputs), outputs=list(layer.outputs),
                           params=list(layer.params), block=layer.block.save())
                    for layer in self.layers],
            meta=self.meta)

    @staticmethod
    def loadobj(s):
        """A DagNN from its saved form (MatConvNet's ``loadobj``).

        ``s`` is what :meth:`saveobj` returns (a mapping with ``layers``,
        ``params``, ``vars``, ``meta``; also as read from a .mat file by
        :func:`simplenn.matfile.read_mat` or by :func:`scipy.io.loadmat`
        with its default options, so MATLAB's
        ``dagnn.DagNN.loadobj(load(file))`` ports as
        ``DagNN.loadobj(scipy.io.loadmat(file))``), a path to a .mat file
        (read as :func:`dagnn.load_net` does, with the checks for untrusted
        files), or a DagNN (returned as is).  A SimpleNN network (its ``layers`` are not
        DagNN layer records) is converted with :meth:`fromSimpleNN` and a
        warning, as in MatConvNet.  Each layer's block is built from its
        ``type`` (``'dagnn.Conv'`` -> :class:`dagnn.Conv`) and saved
        properties (a missing property keeps the class default); the
        ``params`` and ``vars`` records then set the fields they carry.

        Raises
        ------
        ValueError
            For an unknown layer type, a block property the class does not
            have (naming both), a parameter or variable record that no layer
            uses, or a mapping without ``layers``.
        """
        if isinstance(s, DagNN):
            return s
        if isinstance(s, (str, os.PathLike)):
            from .io import read_saved_form

            return DagNN.loadobj(read_saved_form(s, simplenn_ok=True))
        if not isinstance(s, Mapping):
            raise TypeError(f"DagNN.loadobj: unknown data type {type(s).__name__} "
                            "(expected the mapping saveobj returns, a path, or a DagNN)")
        if "layers" not in s:
            raise ValueError("DagNN.loadobj: Invalid model: no 'layers' "
                             f"(fields: {', '.join(map(str, s)) or 'none'})")
        layers = s["layers"]
        if isinstance(layers, (MatStruct, MatCell)):
            # the variables of a file as simplenn.matfile.read_mat returns them
            from .io import saved_form

            if isinstance(layers, MatCell):
                from simplenn.io import network_from_variables

                s = network_from_variables(dict(s), "DagNN.loadobj")
            else:
                s = saved_form(s, "DagNN.loadobj")
            return DagNN.loadobj(s)
        if isinstance(layers, np.ndarray) and (layers.dtype.names or layers.dtype == object):
            # scipy.io.loadmat's output, as MATLAB's loadobj(load(file))
            return DagNN.loadobj(from_loadmat(s, "DagNN.loadobj"))
        if isinstance(layers, np.ndarray):
            raise TypeError(f"DagNN.loadobj: 'layers' is a numeric array ({layers.dtype}, shape "
                            f"{layers.shape}), not layer records")
        if isinstance(layers, Mapping):
            layers = [layers]
        layers = list(layers or [])
        if not all(isinstance(layer, Mapping) and "block" in layer and "type" in layer
                   for layer in layers) or (not layers and "params" not in s):
            warnings.warn("DagNN.loadobj: the model appears to be a SimpleNN model; "
                          "using fromSimpleNN instead", stacklevel=2)
            return DagNN.fromSimpleNN(s)
        obj = DagNN()
        for i, record in enumerate(layers):
            where = f"DagNN.loadobj: layers[{i}]"
            block = layer_class(record["type"])()
            saved = record.get("block")
            block.load(_coerce_properties(block, saved if saved is not None else {}))
            obj.addLayer(record["name"], block, _names(record.get("inputs"), where + ".inputs"),
                         _names(record.get("outputs"), where + ".outputs"),
                         _names(record.get("params"), where + ".params"), skipRebuild=True)
        obj.rebuild()
        for kind, records, fields, lookup, table in (
                ("params", s.get("params"), _PARAM_FIELDS, obj.getParamIndex, obj.params),
                ("vars", s.get("vars"), _VAR_FIELDS, obj.getVarIndex, obj.vars)):
            if isinstance(records, Mapping):
                records = [records]
            for i, record in enumerate(records or []):
                index = lookup(record.get("name"))
                if isinstance(index, float):
                    raise ValueError(f"DagNN.loadobj: {kind}[{i}] '{record.get('name')}' is not "
                                     "used by any layer")
                for field, value in record.items():
                    if field == "name":
                        continue
                    if field not in fields:
                        raise ValueError(f"DagNN.loadobj: {kind}[{i}] has the field '{field}', "
                                         f"which DagNN {kind} do not have "
                                         f"({', '.join(fields)})")
                    table[index][field] = value
        for field, value in s.items():
            if field in ("vars", "params", "layers"):
                continue
            if field != "meta":
                raise ValueError(f"DagNN.loadobj: unknown field '{field}' (a saved DagNN has "
                                 "vars, params, layers and meta)")
            obj.meta = value if value is not None else Struct()
        return obj


def _remap(keep):
    out, count = [], 0
    for k in keep:
        out.append(count if k else None)
        count += k
    return out


def _rates(value):
    if value is None:
        return None
    return [_number(x) for x in np.asarray(_host(value), dtype=np.float64).ravel()]


def _at(values, i):
    if values is None:
        return None
    if i >= len(values):
        raise ValueError(f"DagNN.fromSimpleNN: expected at least {i + 1} learning rates or "
                         f"weight decays, got {values}")
    return values[i]


def _coerce_properties(block, saved):
    """Saved block properties as the class expects them: MATLAB stores a
    list of numbers as a ``1 x N`` array, a one-element list as a number,
    an empty list as ``[]``; a property whose default is a list gets a list
    back (a bool default a bool)."""
    defaults = {**block.properties(), **block.transient_properties()}
    out = Struct()
    for name, value in dict(saved).items():
        default = defaults.get(name)
        if isinstance(default, (list, tuple)):
            if value is None:
                value = []
            elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf" \
                    and value.ndim <= 2 and min(value.shape, default=0) <= 1:
                value = [bool(x) if value.dtype.kind == "b" else _number(x)
                         for x in value.ravel(order="F")]
            elif isinstance(value, (bool, int, float)):
                value = [value]
        elif isinstance(default, bool) and not isinstance(value, bool) \
                and np.size(value) == 1 and not isinstance(value, str):
            value = bool(np.asarray(value).ravel()[0])
        out[name] = value
    return out


def _block_receptive_fields(rfs, num_inputs, num_outputs):
    """A block's ``getReceptiveFields()`` as a num_inputs x num_outputs
    table of (size, stride, offset) arrays; a single record applies to
    every pair, ``None`` (undefined) is NaN everywhere."""
    nan = (np.full(2, np.nan),) * 3

    def one(rf):
        if rf is None:
            return nan
        size = rf.get("size") if isinstance(rf, Mapping) else None
        if _is_empty(size):
            return (None, None, None)
        return tuple(np.asarray(rf[k], dtype=np.float64).ravel() * np.ones(2)
                     for k in ("size", "stride", "offset"))

    if rfs is None or isinstance(rfs, Mapping):
        cell = one(rfs)
        return [[cell] * num_outputs for _ in range(num_inputs)]
    rows = list(rfs)
    if rows and isinstance(rows[0], Mapping):   # one row or one column
        if num_inputs == 1:
            rows = [rows]
        else:
            rows = [[r] for r in rows]
    table = []
    for i in range(num_inputs):
        row = rows[i] if i < len(rows) else []
        table.append([one(row[j]) if j < len(row) else nan for j in range(num_outputs)])
    return table


def _compose(rf1, rf2):
    if rf1[0] is None or rf2[0] is None:
        return (None, None, None)
    size1, stride1, offset1 = rf1
    size2, stride2, offset2 = rf2
    return (stride1 * (size2 - 1) + size1, stride1 * stride2, stride1 * (offset2 - 1) + offset1)


def _resolve(rfs):
    nan = (np.full(2, np.nan),) * 3
    out = (None, None, None)
    for rf in rfs:
        if rf[0] is None:
            continue
        # MATLAB's `if isnan(rf.size)` is true only when every element is NaN
        if np.all(np.isnan(rf[0])):
            return nan
        if out[0] is None:
            out = rf
        elif not np.array_equal(out[1], rf[1]):
            return nan
        else:
            a = out[2] - (out[0] - 1) / 2
            b = out[2] + (out[0] - 1) / 2
            c = rf[2] - (rf[0] - 1) / 2
            d = rf[2] + (rf[0] - 1) / 2
            e, f = np.minimum(a, c), np.maximum(b, d)
            out = (f - e + 1, out[1], (e + f) / 2)
    return out


def _rf_list(values):
    if values is None:
        return None
    return [math.nan if math.isnan(x) else _number(x) for x in values]
