"""Errors a user can act on. Each one names the file, row or value that is wrong."""


class CSCNNError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class DataContractError(CSCNNError):
    """Input data does not follow the data contract (see `cscnn.data.schema`)."""


class ImageError(DataContractError):
    """A catalogue image is missing or cannot be decoded."""


class ConfigError(CSCNNError):
    """A profile, override or option is invalid."""


class RunFailure(CSCNNError):
    """A run failed for a reason outside the user's input (a tool, a service, another run holding the state):
    the CLI exits 1 for it, 2 for the other errors here (README "Exit codes")."""


class ModelMismatchError(CSCNNError):
    """An artifact (embedding table, checkpoint) was built for another model version."""
