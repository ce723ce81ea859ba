"""The base of every DagNN block: :class:`Layer` (MatConvNet's ``dagnn.Layer``).

A block holds its configuration as *properties* (MatConvNet's class
properties): ``PROPERTIES`` lists the saved ones with their defaults and
``TRANSIENT`` the ones kept out of the saved form (a ``Loss`` layer's
running ``average``).  Both are merged along the class hierarchy, base
first, so a subclass lists only what it adds.  A property may have a setter
``_set_<name>(self, value) -> value`` that normalises what is assigned
(``Filter.pad = 1`` stores ``[1, 1, 1, 1]``), as MATLAB's ``set.pad`` does;
it runs on every assignment, from the constructor, ``load`` and user code.

The container calls :meth:`Layer.forwardAdvanced` and
:meth:`Layer.backwardAdvanced`; they hold MatConvNet's memory and
accumulation rules and call the simple interface :meth:`Layer.forward` and
:meth:`Layer.backward` that each block (and a user's own layer) overrides.
"""

import copy

from simplenn.struct import Struct

__all__ = ["Layer", "layer_class", "register_layer"]

# MATLAB class name ('dagnn.Conv') -> Python class, filled by
# ``register_layer`` (every subclass of Layer registers itself).
_REGISTRY = {}


def register_layer(cls, type_name=None):
    """Make ``cls`` known to the loader under ``type_name`` (by default
    ``'dagnn.' + cls.__name__``, MatConvNet's class name)."""
    type_name = type_name or cls.type_name()
    existing = _REGISTRY.get(type_name)
    if existing is not None and existing.__module__.startswith("dagnn.") \
            and not cls.__module__.startswith("dagnn."):
        return cls  # a user's class of the same name does not hide MatConvNet's
    _REGISTRY[type_name] = cls
    return cls


def layer_class(type_name):
    """The class of a saved layer's ``type`` (``'dagnn.Conv'`` ->
    :class:`dagnn.Conv`); a ``ValueError`` naming it when unknown."""
    try:
        return _REGISTRY[type_name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(
            f"unknown layer type {type_name!r}: no such class is defined (known: {known}); "
            "define a subclass of dagnn.Layer for it before loading") from None


def _merged(cls, attribute):
    out = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get(attribute, {}))
    return out


def _is_empty(value):
    return value is None or getattr(value, "size", 1) == 0 or (
        isinstance(value, (list, tuple)) and len(value) == 0)


class Layer:
    """Base class of a DagNN block (MatConvNet's ``dagnn.Layer``).

    ``Layer(*pairs, **properties)`` builds a block from MATLAB-style
    ``'name', value`` pairs (or one mapping / ``Struct`` with the properties)
    and keyword arguments, as ``dagnn.Conv('size', [3 3 64 64])`` does in
    MATLAB; unknown names are a ``ValueError`` naming the property and the
    class.

    A subclass overrides :meth:`forward` and :meth:`backward` (lists in,
    lists out) and, as needed, :meth:`getOutputSizes`,
    :meth:`getParamSizes`, :meth:`getReceptiveFields`, :meth:`initParams`,
    :meth:`reset`, :meth:`move` and :meth:`attach`.  ``self.net`` and
    ``self.layerIndex`` (0-based) are set when the block is attached to a
    :class:`~dagnn.DagNN`.
    """

    PROPERTIES = {}
    TRANSIENT = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_layer(cls)

    def __init__(self, *args, **kwargs):
        object.__setattr__(self, "net", None)
        object.__setattr__(self, "layerIndex", None)
        for name, default in {**self.properties(), **self.transient_properties()}.items():
            setattr(self, name, copy.deepcopy(default))
        self.load(*args, **kwargs)

    # ------------------------------------------------------------------
    # properties

    @classmethod
    def type_name(cls):
        """MatConvNet's class name, the ``type`` of a saved layer."""
        return "dagnn." + cls.__name__

    @classmethod
    def properties(cls):
        """The saved properties and their defaults (an ordered dict)."""
        return _merged(cls, "PROPERTIES")

    @classmethod
    def transient_properties(cls):
        """The properties kept out of the saved form, with defaults."""
        return _merged(cls, "TRANSIENT")

    def __setattr__(self, name, value):
        setter = getattr(type(self), f"_set_{name}", None)
        if setter is not None:
            value = setter(self, value)
        object.__setattr__(self, name, value)

    @staticmethod
    def argsToStruct(*args, **kwargs):
        """MatConvNet's ``argsToStruct``: ``'name', value`` pairs, one list
        of pairs, or one mapping, plus keywords, as one ``Struct``."""
        if len(args) == 1 and isinstance(args[0], dict):
            fields = Struct(args[0])
        else:
            if len(args) == 1 and isinstance(args[0], (list, tuple)):
                args = tuple(args[0])
            if len(args) % 2:
                raise ValueError(
                    f"expected 'name', value pairs, got an odd number ({len(args)}) of arguments")
            fields = Struct()
            for name, value in zip(args[0::2], args[1::2]):
                if not isinstance(name, str):
                    raise ValueError(f"a property name must be a string, got {name!r}")
                fields[name] = value
        fields.update(kwargs)
        return fields

    def load(self, *args, **kwargs):
        """Set properties from a mapping (what :meth:`save` returns),
        ``'name', value`` pairs or keywords.  A name that is not a property
        of the class is a ``ValueError`` (MatConvNet's "No property ... for
        a layer of type ...")."""
        fields = self.argsToStruct(*args, **kwargs)
        known = {**self.properties(), **self.transient_properties()}
        for name, value in fields.items():
            if name not in known:
                raise ValueError(
                    f"No property `{name}` for a layer of type `{self.type_name()}` "
                    f"(its properties: {', '.join(known) or 'none'})")
            setattr(self, name, value)
        return self

    def save(self):
        """The saved properties as a ``Struct`` (the opposite of
        :meth:`load`); transient properties are left out."""
        return Struct((name, copy.deepcopy(getattr(self, name))) for name in self.properties())

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.properties())
        return f"{self.type_name()}({fields})"

    def __deepcopy__(self, memo):
        # the copy is detached: the container re-attaches it
        new = object.__new__(type(self))
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            if name == "net":
                object.__setattr__(new, name, memo.get(id(value)))
            else:
                object.__setattr__(new, name, copy.deepcopy(value, memo))
        return new

    # ------------------------------------------------------------------
    # the simple interface (overridden by each block)

    def forward(self, inputs, params):
        """``outputs = forward(inputs, params)``: lists of arrays."""
        return []

    def backward(self, inputs, params, derOutputs):
        """``derInputs, derParams = backward(inputs, params, derOutputs)``:
        one derivative per input and per parameter."""
        return [], []

    def reset(self):
        """Clear internal state (running averages, cached data)."""

    def initParams(self):
        """Initial values of the block's parameters (a list)."""
        return []

    def move(self, device):
        """Move data internal to the block to ``'cpu'`` or ``'gpu'``
        (parameters and variables are moved by the container)."""

    def getOutputSizes(self, inputSizes):
        """The 4-element size of each output from those of the inputs;
        a list of lists (NaN where unknown)."""
        return []

    def getParamSizes(self):
        """The size of each parameter (a list of lists)."""
        return []

    def getReceptiveFields(self):
        """Receptive fields of each output in each input: a list (one row
        per input) of lists (one per output) of ``Struct(size, stride,
        offset)`` with 2-element lists; ``None`` when undefined (MATLAB's
        ``[]``).  A pixel ``y`` (1-based) of an output depends on the pixels
        ``stride*(y-1) + offset -/+ (size-1)/2`` of the input."""
        return None

    # ------------------------------------------------------------------
    # the advanced interface (MatConvNet's memory and accumulation rules)

    def attach(self, net, index):
        """Attach the block to ``net`` as layer ``index`` (0-based): create
        its variables and parameters.  Override to configure them (as
        ``BatchNorm`` does for its moments)."""
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "layerIndex", index)
        layer = net.layers[index]
        for name in layer.inputs:
            net.addVar(name)
        for name in layer.outputs:
            net.addVar(name)
        for name in layer.params:
            net.addParam(name)

    def forwardAdvanced(self, layer):
        """Run the block forward inside its net: read the input values,
        release inputs no longer needed (``conserveMemory``), write the
        outputs.  A layer with any empty input is skipped."""
        net = self.net
        inputs = [net.vars[v].value for v in layer.inputIndexes]
        if any(_is_empty(value) for value in inputs):
            return
        for v in layer.inputIndexes:
            net.numPendingVarRefs[v] -= 1
            if net.numPendingVarRefs[v] == 0:
                if (not net.vars[v].precious and not net.computingDerivative
                        and net.conserveMemory):
                    net.vars[v].value = None
        outputs = self.forward(inputs, [net.params[p].value for p in layer.paramIndexes])
        if len(outputs) < len(layer.outputIndexes):
            raise ValueError(
                f"layer '{layer.name}' ({self.type_name()}): forward returned "
                f"{len(outputs)} outputs for {len(layer.outputIndexes)} output variables")
        for v, value in zip(layer.outputIndexes, outputs):
            net.vars[v].value = value

    def backwardAdvanced(self, layer):
        """Run the block backward inside its net: skipped unless every
        output has a derivative; input derivatives are summed over a var's
        fanout, parameter derivatives over a shared parameter's fanout
        (and across calls with ``accumulateParamDers``)."""
        net = self.net
        inputs = [net.vars[v].value for v in layer.inputIndexes]
        derOutputs = [net.vars[v].der for v in layer.outputIndexes]
        if any(_is_empty(der) for der in derOutputs):
            return
        if net.conserveMemory:
            for v in layer.outputIndexes:
                if not net.vars[v].precious:
                    net.vars[v].der = None
                    net.vars[v].value = None
        derInputs, derParams = self.backward(
            inputs, [net.params[p].value for p in layer.paramIndexes], derOutputs)
        if not isinstance(derInputs, (list, tuple)) or len(derInputs) != len(layer.inputIndexes):
            raise ValueError(f'Invalid derivatives returned by layer "{layer.name}": expected '
                             f"a list of {len(layer.inputIndexes)} input derivatives")
        if len(derParams) < len(layer.paramIndexes):
            raise ValueError(f'Invalid derivatives returned by layer "{layer.name}": expected '
                             f"a list of {len(layer.paramIndexes)} parameter derivatives")
        for v, der in zip(layer.inputIndexes, derInputs):
            var = net.vars[v]
            if net.numPendingVarRefs[v] == 0 or _is_empty(var.der):
                var.der = der
            elif not _is_empty(der):
                var.der = var.der + der
            net.numPendingVarRefs[v] += 1
        for p, der in zip(layer.paramIndexes, derParams):
            param = net.params[p]
            if (net.numPendingParamRefs[p] == 0 and not net.accumulateParamDers) \
                    or _is_empty(param.der):
                param.der = der
            elif not _is_empty(der):
                param.der = param.der + der
            net.numPendingParamRefs[p] += 1
            if net.numPendingParamRefs[p] == param.fanout:
                if net.parameterServer is not None and not net.holdOn:
                    net.parameterServer.pushWithIndex(p, param.der)
                    param.der = None
