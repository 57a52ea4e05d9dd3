"""ctcforge: stamp, train, evaluate and publish CTC speech recognisers for any language."""

__version__ = "0.1.0"
