"""The errors gradwise raises for bad input; the CLI turns each into one message and exit code 2."""


class GradwiseError(Exception):
    """Base class: something the user gave us is wrong, and the message says how to fix it."""


class ConfigError(GradwiseError):
    """The config (file, --set override or API argument) is invalid."""


class DataError(GradwiseError):
    """The data cannot be read or does not fit the task or the model."""


class NotTrainedError(GradwiseError):
    """A run directory has no trained model in it (yet)."""


class TrainingDiverged(GradwiseError):
    """The loss became NaN/inf or the gradient exploded; the message names a likely cause."""
